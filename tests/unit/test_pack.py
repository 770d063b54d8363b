"""Packing: every token lands in exactly one block, in order; document starts are exact."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mixer.builder.pack import Packer
from mixer.serve.positions import positions

docs_strategy = st.lists(st.integers(1, 50), min_size=0, max_size=60)


def _pack(lengths: list[int], seq_len: int, chunk_sizes: list[int], remainder: str, pad_id=7):
    """Feed documents whose tokens are their own global positions, in the given chunking."""
    tokens = np.arange(sum(lengths), dtype=np.uint32)
    lengths_arr = np.array(lengths, np.int64)
    p = Packer(seq_len, np.uint32)
    blocks, starts = [], []
    i = pos = 0
    for size in [*chunk_sizes, len(lengths)]:
        part = lengths_arr[i : i + size]
        out = p.feed(tokens[pos : pos + part.sum()], part)
        blocks += list(out.blocks)
        starts += out.starts
        i += part.size
        pos += int(part.sum())
        if i >= len(lengths):
            break
    last, dropped, padding = p.finish(remainder, pad_id)
    return p, blocks + list(last.blocks), starts + last.starts, dropped, padding


@settings(max_examples=300, deadline=None)
@given(
    lengths=docs_strategy,
    seq_len=st.integers(2, 40),
    chunks=st.lists(st.integers(0, 10), max_size=8),
    pad=st.booleans(),
)
def test_blocks_are_the_concatenation_cut_every_seq_len(lengths, seq_len, chunks, pad):
    remainder = "pad" if pad else "drop"
    p, blocks, starts, dropped, padding = _pack(lengths, seq_len, chunks, remainder)
    total = sum(lengths)
    assert p.num_tokens == total and p.num_documents == len(lengths)
    flat = np.concatenate(blocks) if blocks else np.empty(0, np.uint32)
    assert all(b.size == seq_len for b in blocks)
    if pad:
        assert dropped == 0
        assert padding == (-total) % seq_len
        assert (flat[:total] == np.arange(total)).all()
        assert (flat[total:] == 7).all()
    else:
        assert padding == 0 and dropped == total % seq_len
        assert (flat == np.arange(total - dropped)).all()
    # Document starts: exactly the global starts that fall in each block, block-relative.
    global_starts = np.cumsum(lengths) - np.array(lengths, np.int64) if lengths else np.array([])
    for b, s in enumerate(starts):
        expected = global_starts[
            (global_starts >= b * seq_len) & (global_starts < (b + 1) * seq_len)
        ]
        assert s.dtype == np.uint32
        assert (s.astype(np.int64) + b * seq_len == expected).all()


def test_drop_and_pad_counts_on_a_known_case():
    _, blocks, starts, dropped, padding = _pack([3, 4, 2], 4, [], "drop")
    assert [b.tolist() for b in blocks] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert [s.tolist() for s in starts] == [[0, 3], [3]]
    assert dropped == 1 and padding == 0
    _, blocks, starts, dropped, padding = _pack([3, 4, 2], 4, [], "pad", pad_id=99)
    assert blocks[-1].tolist() == [8, 99, 99, 99] and starts[-1].tolist() == []
    assert dropped == 0 and padding == 3


def test_position_ids_restart_at_each_document_start():
    def one(starts, n):
        return positions(np.zeros(len(starts), np.int64), np.array(starts, np.int64), 1, n)[0]

    assert one([0, 3], 6).tolist() == [0, 1, 2, 0, 1, 2]
    # A block that continues a document starts at 0 too (a new sequence for the model).
    assert one([4], 6).tolist() == [0, 1, 2, 3, 0, 1]
    assert one([], 4).tolist() == [0, 1, 2, 3]


@given(st.lists(st.lists(st.integers(0, 29), max_size=6), min_size=1, max_size=8))
def test_position_ids_of_many_blocks_match_a_per_token_oracle(starts):
    starts = [sorted(set(s)) for s in starts]
    rows = np.array([r for r, s in enumerate(starts) for _ in s], np.int64)
    cols = np.array([c for s in starts for c in s], np.int64)
    got = positions(rows, cols, len(starts), 30)
    for r, s in enumerate(starts):
        last, expected = 0, []
        for j in range(30):
            last = j if j in s else last
            expected.append(j - last)
        assert got[r].tolist() == expected


@settings(max_examples=100, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 40), min_size=1, max_size=20),
    seq_len=st.integers(2, 16),
    cut=st.integers(1, 39),
    which=st.integers(0, 19),
)
def test_a_document_fed_in_slices_packs_like_a_whole_one(lengths, seq_len, cut, which):
    which %= len(lengths)
    tokens = np.arange(sum(lengths), dtype=np.uint32)
    whole = Packer(seq_len, np.uint32)
    a = whole.feed(tokens, np.array(lengths))
    sliced = Packer(seq_len, np.uint32)
    before = sum(lengths[:which])
    cut = min(cut, lengths[which] - 1) if lengths[which] > 1 else 0
    parts = [(0, before + cut, lengths[:which] + ([cut] if cut else []), False)]
    rest = [lengths[which] - cut] + lengths[which + 1 :]
    parts.append((before + cut, sum(lengths), rest, bool(cut)))
    blocks, starts = [], []
    for lo, hi, ls, cont in parts:
        if ls:
            out = sliced.feed(tokens[lo:hi], np.array(ls), continues=cont)
            blocks += list(out.blocks)
            starts += out.starts
    assert [b.tolist() for b in blocks] == [b.tolist() for b in a.blocks]
    assert [s.tolist() for s in starts] == [s.tolist() for s in a.starts]
    assert sliced.num_documents == whole.num_documents == len(lengths)
