"""What a split's blocks train on: the ledger (documents cut, padding, loss tokens) and the
per-block padding file of a best-fit split, with the checks a reader makes before trusting them.

``padding.bin`` (best-fit splits only; concat splits pad at most their last block and have
none): one little-endian uint32 per block, the padding tokens at the block's end, in block
order. It is hashed in the manifest like a shard; serving reads it to give every sample its
``num_padding``, and a plan weighted in tokens reads it for each block's loss tokens.

The ledger sits outside the manifest's fingerprint (as ``encoders`` does): it is a report,
derived from the blocks, and keeping it out leaves every concat build's fingerprint as it
was. A build older than the ledger has none (`mixer stats` shows it as unknown). Its values
are still bounded on load: a reader never prints what a block count cannot hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mixer.artifacts.checks import Refused, count, hex64

PADDING_FILE = "padding.bin"
PADDING_DTYPE = np.dtype("<u4")


@dataclass(frozen=True, kw_only=True)
class LedgerRecord:
    """Per source and split: what its blocks hold beyond their token counts."""

    documents_cut: int  # documents whose tokens lie in two or more blocks
    padding_tokens: int  # padding in all the split's blocks
    loss_tokens: int  # labels scored by MixerCollator: per block seq_len - 1 - its padding


def ledger_of(blocks: int, seq_len: int, documents_cut: int, padding: int) -> LedgerRecord:
    return LedgerRecord(
        documents_cut=documents_cut,
        padding_tokens=padding,
        loss_tokens=blocks * (seq_len - 1) - padding + _all_padding(blocks, seq_len, padding),
    )


def _all_padding(blocks: int, seq_len: int, padding: int) -> int:
    """A block of padding only scores nothing (not -1): at most one, the last of a split."""
    return int(blocks > 0 and padding >= seq_len)  # concat's `remainder: pad` never fills one


def read_padding(path: Path, blocks: int) -> np.ndarray:
    """The per-block padding of a split (int64), its size checked against ``blocks``."""
    arr = np.fromfile(path, PADDING_DTYPE)
    if arr.size != blocks:
        raise ValueError(f"{path}: {arr.size} blocks, the manifest says {blocks}")
    return arr.astype(np.int64)


def block_loss(manifest, source: str) -> np.ndarray:
    """Loss tokens of each train block of a source of a local build (``manifest``: a
    `Manifest`): seq_len - 1 less the block's padding, from ``padding.bin`` (best-fit) or the
    split's last-block padding (concat)."""
    rec, L = manifest.split(source, "train"), manifest.seq_len
    if rec.padding is not None:
        pads = read_padding(manifest.split_dir(source, "train") / rec.padding.file, rec.blocks)
    else:
        pads = np.zeros(rec.blocks, np.int64)
        pads[-1:] = rec.padding_tokens
    return np.maximum(L - 1 - pads, 0)


def check_ledger(m) -> None:
    """The padding files' records and the ledger of a typed `Manifest`, bounded (Refused)."""
    L = m.seq_len
    for name, src in m.sources.items():
        for split in ("train", "val"):
            rec = src.split(split)
            where = f"manifest.sources.{name}.{split}.padding"
            if rec.padding is not None:
                if rec.padding.file != PADDING_FILE:
                    raise Refused(f"{where}.file", f"is not {PADDING_FILE}")
                count(rec.padding.bytes, f"{where}.bytes", 4 * rec.blocks, 4 * rec.blocks)
                hex64(rec.padding.sha256, f"{where}.sha256")
    for name, splits in (m.ledger or {}).items():
        if name not in m.sources:
            raise Refused(f"manifest.ledger.{name[:64]}", "is not a source of the build")
        for split, led in splits.items():
            where = f"manifest.ledger.{name}.{split[:16]}"
            if split not in ("train", "val"):
                raise Refused(where, "is not a split (train or val)")
            rec = m.sources[name].split(split)
            count(led.documents_cut, f"{where}.documents_cut", high=rec.documents)
            count(led.padding_tokens, f"{where}.padding_tokens", high=rec.blocks * L)
            count(led.loss_tokens, f"{where}.loss_tokens", high=rec.blocks * (L - 1))
