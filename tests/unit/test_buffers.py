"""Chunk buffers: memory is reused only when nothing handed out still refers to it."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import mixer.serve.buffers as buffers
from mixer.serve.buffers import Buffers


def address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def test_numpy_points_views_at_the_chunk():
    assert buffers._VIEWS_POINT_AT_CHUNK  # else Buffers hands out fresh arrays (tested below)


@pytest.mark.parametrize(
    "keep",
    [
        lambda out: out[0, 1],  # a sample
        lambda out: out[1, 2][3:],  # a slice of one
        lambda out: out[0, 0].reshape(2, -1),
        lambda out: out[0, 1].view(np.uint64),
        lambda out: torch.as_tensor(out[0, 2]),  # what a DataLoader's collate makes
        lambda out: memoryview(out[1, 0]),
    ],
)
def test_memory_that_a_kept_view_uses_is_never_handed_out_again(keep):
    bufs = Buffers(keep=2)
    out = bufs.get((2, 3, 8))
    out[...] = 7
    kept = keep(out)
    first = address(out)
    del out
    gc.collect()
    for _ in range(5):  # later chunks, each dropped at once
        nxt = bufs.get((2, 3, 8))
        assert address(nxt) != first
        nxt[...] = -1
        del nxt
    assert (np.asarray(kept) == 7).all()


def test_memory_is_reused_once_nothing_refers_to_it():
    bufs = Buffers(keep=2)
    out = bufs.get((2, 128, 64))
    first = address(out)
    sample = out[0, 5]
    del out, sample
    again = bufs.get((2, 100, 64))  # a smaller chunk fits the same memory
    assert address(again) == first and again.shape == (2, 100, 64)
    assert again.dtype == np.int64 and again.flags.writeable


def test_without_the_numpy_property_every_chunk_is_fresh(monkeypatch):
    monkeypatch.setattr(buffers, "_VIEWS_POINT_AT_CHUNK", False)
    bufs = Buffers()
    a = bufs.get((1, 2, 4))
    a[...] = 3
    b = bufs.get((1, 2, 4))
    b[...] = 4
    assert (a == 3).all() and not np.shares_memory(a, b)


@given(seq_len=st.integers(2, 1 << 20), most=st.integers(1, 4096))
def test_a_chunk_is_bounded_in_bytes_whatever_seq_len(seq_len, most):
    from mixer.serve.buffers import CHUNK_BYTES, chunk_samples

    k = chunk_samples(seq_len, most)
    assert 1 <= k <= most
    assert k * 2 * seq_len * 8 <= max(CHUNK_BYTES, 2 * seq_len * 8)
