"""Pure best-fit packing: whole documents into ``seq_len`` blocks, the rest of a block padding.

Best-fit decreasing (Ding et al. 2024, "Fewer Truncations Improve Language Modeling") over
each window of ``window`` consecutive documents of a split: the window's documents, longest
first (ties in document order), each go into the open block with the least room that still
holds it, or open a new one. A document longer than ``seq_len`` is cut into ``seq_len``-token
pieces; its full pieces are blocks of their own and only its last piece is packed, first in
its block and right after its full pieces (so a block holds at most one such last piece).
That keeps every document contiguous in the split's stream of real tokens (the blocks with
their padding removed), which is what the provenance table indexes
(`mixer.artifacts.origins`). Windows are cut every ``window`` documents of the split, or
sooner once a window holds ``WINDOW_TOKENS`` tokens (`windows`), so the blocks are a pure
function of the documents in unit order, whatever the worker count or engine.

The loop is per document (a bisect over the open blocks' room, about 3 us); the tokens are
moved by numpy in one gather and one masked scatter per window. Hand-written: no packaged
library offers best-fit decreasing over numpy lengths with this layout constraint (OLMo-core
and Grain each carry their own packer), and it is forty lines.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from mixer.builder.pack import Packed

WINDOW_TOKENS = 1 << 24  # a window ends sooner at this many tokens (64 MiB of uint32)


@dataclass(frozen=True, kw_only=True)
class Layout:
    """A window's blocks: documents in block order, and each block's real tokens."""

    order: np.ndarray  # the window's document indices, in the order their tokens are laid out
    used: np.ndarray  # per block: real tokens (the rest, seq_len - used, is padding)


def _fit(rooms: list, size: int) -> int:
    """Index in ``rooms`` (sorted (room, block)) of the least room >= size; len if none."""
    return bisect.bisect_left(rooms, (size, -1))


def best_fit(lengths: np.ndarray, seq_len: int) -> Layout:
    """The blocks of one window of documents (``lengths`` >= 1, in document order)."""
    L = seq_len
    lengths = np.asarray(lengths, np.int64)
    full, rest = np.divmod(lengths, L)
    items = np.flatnonzero(rest > 0)
    items = items[np.argsort(-rest[items], kind="stable")]  # longest first, ties in order
    free: list = []  # (room, block) of open blocks without a last piece of a long document
    taken: list = []  # (room, block) of open blocks that hold one
    bins: list[list[int]] = []
    heads: list[int] = []  # per block: the long document whose last piece it starts, or -1
    heads_of = (full[items] > 0).tolist()
    for d, size, head in zip(items.tolist(), rest[items].tolist(), heads_of, strict=True):
        i, j = _fit(free, size), (len(taken) if head else _fit(taken, size))
        if i < len(free) and (j == len(taken) or free[i] <= taken[j]):
            room, b = free.pop(i)
            pool = taken if head else free
        elif j < len(taken):
            room, b = taken.pop(j)
            pool = taken
        else:
            room, b = L, len(bins)
            bins.append([])
            heads.append(-1)
            pool = taken if head else free
        bins[b].append(d)
        if head:
            heads[b] = d
        if room - size:
            bisect.insort(pool, (room - size, b))
    return _layout(lengths, full, rest, bins, heads, L)


def _layout(lengths, full, rest, bins, heads, L: int) -> Layout:
    """Documents of whole blocks first (in order), then each block, after the full pieces of
    the long document whose last piece starts it; the other documents in document order."""
    whole = np.flatnonzero((rest == 0) & (full > 0))
    order = [whole]
    used = [np.full(int(full[whole].sum()), L, np.int64)]
    for docs, head in zip(bins, heads, strict=True):
        docs = sorted(docs)
        if head >= 0:
            docs.remove(head)
            docs.insert(0, head)
            used.append(np.full(int(full[head]), L, np.int64))
        order.append(np.array(docs, np.int64))
        used.append(np.array([int(rest[docs].sum())], np.int64))
    return Layout(order=np.concatenate(order), used=np.concatenate(used))


def assemble(tokens: np.ndarray, lengths: np.ndarray, layout: Layout, L: int, pad_id: int):
    """(blocks [n, L] padded with ``pad_id``, starts per block, padding per block) of a window
    whose documents' tokens are ``tokens`` (concatenated in document order)."""
    lengths = np.asarray(lengths, np.int64)
    first = np.cumsum(lengths) - lengths
    ln = lengths[layout.order]
    # the tokens in layout order: one gather (document d's tokens are first[d] + 0..len-1)
    at = np.repeat(first[layout.order] - (np.cumsum(ln) - ln), ln) + np.arange(int(ln.sum()))
    real = tokens[at]
    n = layout.used.size
    blocks = np.full((n, L), pad_id, tokens.dtype)
    blocks[np.arange(L) < layout.used[:, None]] = real
    # each document starts a segment: (block, offset) of its first token in the real stream
    ends = np.cumsum(layout.used)
    pos = np.cumsum(ln) - ln
    b = np.searchsorted(ends, pos, side="right")
    off = (pos - (ends - layout.used)[b]).astype(np.uint32)
    cuts = np.searchsorted(b, np.arange(n + 1))
    starts = [off[cuts[k] : cuts[k + 1]] for k in range(n)]
    return blocks, starts, (L - layout.used).astype(np.int64)


def windows(lengths: np.ndarray, window: int, cap: int, final: bool) -> list[int]:
    """Where the windows of these held documents end: every ``window`` documents, or sooner
    once a window holds ``cap`` tokens (so a window of long documents stays in memory); the
    cuts depend on the documents alone. Not ``final``: the last document may still grow, so
    only windows that end before it are cut (``[0]``: none)."""
    n = lengths.size - (0 if final else 1)
    ends = np.cumsum(lengths[: max(n, 0)])
    cuts, a = [0], 0
    while a < n:
        b = min(a + window, n)
        over = int(np.searchsorted(ends, (ends[a - 1] if a else 0) + cap, side="left")) + 1
        b = min(b, max(over, a + 1))
        if b - a < window and b == n and over > n and not final:
            break  # neither full nor over the cap: wait for more documents
        cuts.append(b)
        a = b
    return cuts


class BestFitPacker:
    """Incremental best-fit packing with the interface of `mixer.builder.pack.Packer`.

    Documents are held until ``window`` of them (and the start of the next, since the last
    one fed may continue) are in; every block is padded to ``seq_len`` with ``pad_id``, so
    nothing is dropped. ``Packed.order`` gives the documents (numbered from 0 in the split)
    in the order their tokens are laid out, for the provenance table.
    """

    def __init__(
        self, seq_len: int, dtype: np.dtype | str, window: int, pad_id: int, cap=WINDOW_TOKENS
    ):
        assert seq_len >= 2 and window >= 1
        self.seq_len, self.dtype = seq_len, np.dtype(dtype)
        self.window, self.pad_id, self.cap = window, pad_id, cap
        self._tokens: list[np.ndarray] = []
        self._lengths: list[int] = []
        self._first = 0  # split index of the first document held
        self.num_tokens = self.num_documents = 0
        self.padding_tokens = self.documents_cut = self.loss_tokens = 0

    def feed(self, tokens: np.ndarray, lengths: np.ndarray, continues: bool = False) -> Packed:
        assert int(lengths.sum()) == tokens.size and (lengths > 0).all()
        self.num_tokens += tokens.size
        self.num_documents += lengths.size - int(continues)
        lens = lengths.tolist()
        if continues:
            self._lengths[-1] += lens.pop(0)
        self._tokens.append(tokens.astype(self.dtype, copy=False))
        self._lengths += lens
        return self._pack(keep_last=True)

    def finish(self, remainder: str, pad_id: int) -> tuple[Packed, int, int]:
        """The documents still held, packed (``remainder`` has no effect: every block is
        padded); (packed, dropped 0, padding of these blocks)."""
        packed = self._pack(keep_last=False)
        return packed, 0, int(packed.padding.sum())

    def _pack(self, keep_last: bool) -> Packed:
        lengths = np.array(self._lengths, np.int64)
        cuts = windows(lengths, self.window, self.cap, final=not keep_last)
        if len(cuts) < 2:
            return _empty(self.seq_len, self.dtype)
        tokens = np.concatenate(self._tokens)
        ends = np.concatenate([[0], np.cumsum(lengths)])
        parts = []
        for a, b in zip(cuts[:-1], cuts[1:], strict=True):
            lay = best_fit(lengths[a:b], self.seq_len)
            win = tokens[ends[a] : ends[b]]
            parts.append((*assemble(win, lengths[a:b], lay, self.seq_len, self.pad_id), lay))
            self.documents_cut += int((lengths[a:b] > self.seq_len).sum())
        done = cuts[-1]
        self._tokens = [tokens[ends[done] :]]
        self._lengths = self._lengths[done:]
        first = self._first + np.array(cuts[:-1])
        order = np.concatenate([p[3].order + f for p, f in zip(parts, first, strict=True)])
        self._first += done
        padding = np.concatenate([p[2] for p in parts])
        self.padding_tokens += int(padding.sum())
        self.loss_tokens += int((self.seq_len - 1 - padding).sum())
        return Packed(
            blocks=np.concatenate([p[0] for p in parts]),
            starts=[s for p in parts for s in p[1]],
            padding=padding,
            order=order,
        )


def _empty(L: int, dtype) -> Packed:
    return Packed(
        blocks=np.empty((0, L), dtype),
        starts=[],
        padding=np.empty(0, np.int64),
        order=np.empty(0, np.int64),
    )
