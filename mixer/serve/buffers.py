"""Output arrays for `StreamingMixture`'s chunks, reused only once nothing refers to them."""

from __future__ import annotations

import math
import weakref

import numpy as np

CHUNK_BYTES = 8 << 20  # one chunk's output array: 256 samples of 2048 tokens, ids and positions


def chunk_samples(seq_len: int, most: int) -> int:
    """Samples per chunk (at most ``most``) such that a chunk's int64 array of ids and
    positions (2 x K x seq_len) is at most CHUNK_BYTES, or one sample when a sample alone is
    larger (16 MiB at the largest seq_len, 2^20): a reader's chunk memory is bounded by mixer,
    never by the build's seq_len."""
    return max(1, min(most, CHUNK_BYTES // (2 * seq_len * 8)))


class Buffers:
    """Output arrays whose memory is reused once nothing handed out refers to it.

    A fresh 4 MiB array per chunk costs page faults whenever the allocator has given the last
    one back to the system (measured: 5-10% of the direct rate). Instead each chunk gets a new
    array object over a pooled block of memory (a bytearray). numpy points every view of it (a
    sample, a slice of one, an array or tensor made from one) at that object, the first one up
    the chain whose own base is not an array, so a weak reference to it dies only once nothing
    handed out is left: a sample the caller keeps never changes. No reference count is read, so
    this holds on any Python (on PyPy a block waits for the next collection); a self-check
    falls back to fresh arrays should numpy ever record views' bases differently. At most
    ``keep`` blocks are pooled: with chunks of `chunk_samples`, ``keep`` x max(CHUNK_BYTES,
    one sample) bytes.
    """

    def __init__(self, keep: int = 4):
        self._pool: list[list] = []  # [bytearray, weak reference to the array made over it]
        self._keep = keep

    def get(self, shape: tuple[int, ...]) -> np.ndarray:
        n = math.prod(shape)
        if not _VIEWS_POINT_AT_CHUNK:
            return np.empty(shape, np.int64)
        for slot in self._pool:
            if len(slot[0]) >= 8 * n and slot[1]() is None:
                break
        else:
            slot = [bytearray(8 * n), None]
            if len(self._pool) < self._keep:
                self._pool.append(slot)
        flat = np.frombuffer(slot[0], np.int64, count=n)
        slot[1] = weakref.ref(flat)
        return flat.reshape(shape)


def _views_point_at_chunk() -> bool:
    flat = np.frombuffer(bytearray(64), np.int64)
    out = flat.reshape(2, 4)
    sample = out[1]
    return all(v.base is flat for v in (out, sample, sample[1:], sample.reshape(2, 2)))


_VIEWS_POINT_AT_CHUNK = _views_point_at_chunk()
