"""Pure packing: a stream of documents' tokens -> fixed-length blocks with document starts.

Documents are concatenated in order and cut every ``seq_len`` tokens, so every token except the
final partial block lands in exactly one block: at most ``seq_len - 1`` tokens per source and
split are dropped (``remainder: drop``) or padded (``remainder: pad``). Each block carries the
offsets at which documents start inside it, for position ids and cross-document masks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, kw_only=True)
class Packed:
    blocks: np.ndarray  # [num_blocks, seq_len]
    starts: list[np.ndarray]  # per block: offsets (uint32) where a document starts
    padding: np.ndarray | None = None  # per block: padding tokens at its end (best-fit only)
    order: np.ndarray | None = None  # best-fit: the split's documents in layout order


class Packer:
    """Incremental concat packing; feed chunks of documents, then finish once."""

    def __init__(self, seq_len: int, dtype: np.dtype | str):
        assert seq_len >= 2
        self.seq_len = seq_len
        self.dtype = np.dtype(dtype)
        self._carry = np.empty(0, self.dtype)  # < seq_len tokens not yet in a block
        self._carry_starts = np.empty(0, np.int64)
        self.num_tokens = 0
        self.num_documents = 0
        self.documents_cut = 0  # documents whose tokens span two or more blocks
        self._open = None  # (start, end) in the split's tokens of the last document fed

    def feed(self, tokens: np.ndarray, lengths: np.ndarray, continues: bool = False) -> Packed:
        """Add documents (their tokens concatenated, and each one's length >= 1); with
        ``continues``, the first one is the rest of the previous feed's last document."""
        assert int(lengths.sum()) == tokens.size and (lengths > 0).all()
        self._count_cut(lengths, continues)
        self.num_tokens += tokens.size
        self.num_documents += lengths.size - int(continues)
        L = self.seq_len
        buf = np.concatenate([self._carry, tokens.astype(self.dtype, copy=False)])
        doc_starts = (np.cumsum(lengths) - lengths + self._carry.size)[int(continues) :]
        starts = np.concatenate([self._carry_starts, doc_starts])
        n = buf.size // L
        cuts = np.searchsorted(starts, np.arange(n + 1) * L)  # starts of block b: cuts[b]:cuts[b+1]
        per_block = [(starts[cuts[b] : cuts[b + 1]] - b * L).astype(np.uint32) for b in range(n)]
        self._carry = buf[n * L :]
        self._carry_starts = starts[cuts[n] :] - n * L
        return Packed(blocks=buf[: n * L].reshape(n, L), starts=per_block)

    def _count_cut(self, lengths: np.ndarray, continues: bool) -> None:
        """Count the documents that end before this feed's last one (which may continue)."""
        if not lengths.size:
            return
        ends = self.num_tokens + np.cumsum(lengths)
        starts = ends - lengths
        if self._open is not None:
            if continues:
                starts[0] = self._open[0]
            else:
                starts = np.concatenate([[self._open[0]], starts])
                ends = np.concatenate([[self._open[1]], ends])
        L = self.seq_len
        self.documents_cut += int((starts[:-1] // L != (ends[:-1] - 1) // L).sum())
        self._open = (int(starts[-1]), int(ends[-1]))

    def finish(self, remainder: str, pad_id: int) -> tuple[Packed, int, int]:
        """The last partial block: (packed, dropped_tokens, padding_tokens)."""
        if self._open is not None:
            a, b = self._open
            self.documents_cut += int(a // self.seq_len != (b - 1) // self.seq_len)
            self._open = None
        rest = self._carry.size
        empty = Packed(blocks=np.empty((0, self.seq_len), self.dtype), starts=[])
        if rest == 0:
            return empty, 0, 0
        if remainder == "drop":
            return empty, rest, 0
        pad = self.seq_len - rest
        block = np.concatenate([self._carry, np.full(pad, pad_id, self.dtype)])
        starts = [self._carry_starts.astype(np.uint32)]
        return Packed(blocks=block.reshape(1, -1), starts=starts), 0, pad
