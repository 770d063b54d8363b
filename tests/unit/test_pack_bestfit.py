"""Best-fit packing: every document's tokens exactly once across its split's blocks (a long
document's pieces in order), no block over ``seq_len``, padding only at block ends, documents
that fit a block never cut, and the blocks the same however the documents are fed."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mixer.builder.pack import Packer
from mixer.builder.pack_bestfit import BestFitPacker, best_fit, windows

PAD = 0
FEEDS = {  # documents, block size, window, and how the documents are fed
    "lengths": st.lists(st.integers(1, 90), min_size=1, max_size=60),
    "seq_len": st.integers(2, 40),
    "window": st.integers(1, 20),
    "cuts": st.lists(st.integers(1, 10), max_size=8),
    "slice_at": st.one_of(st.none(), st.integers(1, 30)),
    "cap": st.integers(1, 300),  # a window's most tokens (before it has `window` documents)
}


def _feed(lengths, seq_len: int, window: int, cuts: list[int], slice_at: int | None, cap=1 << 24):
    """Documents whose tokens are (document + 1, position in it) encoded in one id, fed in the
    chunks ``cuts`` gives; with ``slice_at``, a document longer than it comes in two slices
    (``continues``), as the merge feeds one longer than its chunk."""
    ids = [(d + 1) * 1000 + np.arange(n) for d, n in enumerate(lengths)]
    p = BestFitPacker(seq_len, np.uint32, window, PAD, cap)
    outs, d = [], 0
    for size in [*cuts, len(lengths)]:
        part = list(range(d, min(d + size, len(lengths))))
        if slice_at is None:  # the chunk in one feed
            lens = np.array([lengths[doc] for doc in part])
            outs.append(p.feed(np.concatenate([ids[doc] for doc in part]), lens))
            part = []
        for doc in part:  # one feed per document, a long one in two slices
            n = lengths[doc]
            if slice_at is not None and n > slice_at:
                outs.append(p.feed(ids[doc][:slice_at], np.array([slice_at])))
                rest = ids[doc][slice_at:]
                outs.append(p.feed(rest, np.array([rest.size]), continues=True))
            else:
                outs.append(p.feed(ids[doc], np.array([n])))
        d += size
        if d >= len(lengths):
            break
    last, dropped, padding = p.finish("drop", PAD)
    outs.append(last)
    blocks = np.concatenate([o.blocks for o in outs])
    return p, blocks, outs, dropped, padding


@settings(max_examples=300, deadline=None)
@given(**FEEDS)
def test_every_token_once_pieces_in_order_padding_at_ends(
    lengths, seq_len, window, cuts, slice_at, cap
):
    p, blocks, outs, dropped, _ = _feed(lengths, seq_len, window, cuts, slice_at, cap)
    L = seq_len
    padding = np.concatenate([o.padding for o in outs])
    order = np.concatenate([o.order for o in outs])
    assert blocks.shape == (padding.size, L) and (padding >= 0).all() and (padding < L).all()
    real = np.arange(L) < (L - padding)[:, None]
    assert (blocks[~real] == PAD).all() and (blocks[real] != PAD).all()  # padding at ends only
    stream = blocks[real]
    # every document exactly once, each contiguous and in order: the real tokens are the
    # documents' in layout order, and the layout order is a permutation of the documents
    assert sorted(order.tolist()) == list(range(len(lengths)))
    want = np.concatenate([(d + 1) * 1000 + np.arange(lengths[d]) for d in order])
    assert np.array_equal(stream, want)
    # a document that fits a block lies in one block; a longer one in ceil(n / L) blocks
    which = np.repeat(np.arange(padding.size), L - padding)
    doc_of = stream // 1000 - 1
    for d, n in enumerate(lengths):
        held = np.unique(which[doc_of == d])
        assert held.size == -(-n // L) and (np.diff(held) == 1).all(), (d, n, held)
    assert dropped == 0 and p.padding_tokens == int(padding.sum())
    assert p.documents_cut == sum(n > L for n in lengths)
    assert p.loss_tokens == int((L - 1 - padding).sum())
    # each document's start is one of its block's starts
    starts = [s for o in outs for s in o.starts]
    first = np.flatnonzero(np.diff(doc_of, prepend=-1) != 0)
    ends = np.concatenate([[0], np.cumsum(L - padding)])
    got = sorted((int(which[i]), int(i - ends[which[i]])) for i in first)
    assert got == [(b, int(o)) for b, s in enumerate(starts) for o in s]


@settings(max_examples=200, deadline=None)
@given(**FEEDS)
def test_the_blocks_do_not_depend_on_how_documents_are_fed(
    lengths, seq_len, window, cuts, slice_at, cap
):
    """Windows are cut every ``window`` documents of the split, whatever the chunks (which
    depend on units): the same bytes, as any worker count and engine must give."""
    _, one, outs_one, _, _ = _feed(lengths, seq_len, window, [], None, cap)
    _, two, outs_two, _, _ = _feed(lengths, seq_len, window, cuts, slice_at, cap)
    assert np.array_equal(one, two)
    for key in ("padding", "order"):
        a = np.concatenate([getattr(o, key) for o in outs_one])
        b = np.concatenate([getattr(o, key) for o in outs_two])
        assert np.array_equal(a, b)


@settings(max_examples=200, deadline=None)
@given(lengths=st.lists(st.integers(1, 64), min_size=1, max_size=200), seq_len=st.integers(8, 64))
def test_no_two_blocks_could_have_been_one(lengths, seq_len):
    """Documents that fit: a block is opened only for a document no open block holds, so no
    two blocks' documents fit in one (hence fewer than half the tokens are padding)."""
    lens = np.minimum(np.array(lengths), seq_len)
    lay = best_fit(lens, seq_len)
    assert (lay.used <= seq_len).all() and int(lay.used.sum()) == int(lens.sum())
    if lay.used.size >= 2:
        assert int(np.sort(lay.used)[:2].sum()) > seq_len


def test_concat_counts_documents_across_block_boundaries():
    p = Packer(4, np.uint32)
    p.feed(np.arange(10, dtype=np.uint32), np.array([3, 3, 4]))  # [0,3) [3,6) [6,10)
    p.feed(np.arange(2, dtype=np.uint32), np.array([2]))  # [10, 12)
    p.finish("drop", 0)
    assert p.documents_cut == 2  # the second spans blocks 0-1, the third blocks 1-2


@settings(max_examples=300, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 50), min_size=1, max_size=80),
    window=st.integers(1, 20),
    cap=st.integers(1, 200),
)
def test_windows_hold_window_documents_or_reach_the_cap(lengths, window, cap):
    """Each window but the last has ``window`` documents, or fewer whose tokens reach the cap
    while all but its last document stay under it; cutting with a document still open cuts
    the same windows, up to that document."""
    lens = np.array(lengths)
    cuts = windows(lens, window, cap, final=True)
    assert cuts[0] == 0 and cuts[-1] == len(lengths) and (np.diff(cuts) >= 1).all()
    for a, b in zip(cuts[:-2], cuts[1:-1], strict=True):
        full = b - a == window
        assert full or (lens[a:b].sum() >= cap and lens[a : b - 1].sum() < cap)
        assert b - a <= window
    open_cuts = windows(lens, window, cap, final=False)
    assert open_cuts == cuts[: len(open_cuts)] and open_cuts[-1] <= len(lengths) - 1
