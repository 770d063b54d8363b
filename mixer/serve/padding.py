"""Each served sample's padding (``num_padding``): the last block of a ``remainder: pad``
split (from the plan), or any block of a best-fit split (its ``padding.bin``,
`mixer.artifacts.ledger`), read once per split, its sha256 checked against the manifest."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from mixer.artifacts.fetch import fetch
from mixer.artifacts.ledger import read_padding
from mixer.artifacts.manifest import Manifest
from mixer.errors import OutputError
from mixer.plan.tokens import served_sum
from mixer.serve.positions import padding_of


class BlockPadding:
    """The padding of the samples a mixture serves (None: its build pads no block)."""

    def __init__(self, manifest: Manifest, split: str, cache: Path):
        self.manifest, self.split, self.cache = manifest, split, Path(cache)
        self._arrays: dict[str, np.ndarray] = {}

    def of(self, plan, src: np.ndarray, blocks: np.ndarray) -> list[int] | None:
        """Per sample (source index ``src``, block ``blocks``), its padding tokens."""
        per_block, any_file = {}, False
        for s, p in enumerate(plan.sources):
            if self.manifest.split(p.name, self.split).padding is not None:
                any_file = True
                if (src == s).any():
                    per_block[s] = self.array(p.name)
        return padding_of(plan, src, blocks, per_block, always=any_file)

    def array(self, source: str) -> np.ndarray:
        """A best-fit split's per-block padding (int64), fetched and checked once."""
        if source not in self._arrays:
            rec = self.manifest.split(source, self.split)
            rel = f"sources/{source}/{self.split}/{rec.padding.file}"
            path = fetch(
                self.manifest.location,
                rel,
                self.cache / rel,
                within=self.cache,
                size=rec.padding.bytes,
            )
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() != rec.padding.sha256:
                raise OutputError(f"{path}: sha256 differs from the manifest; rebuild or restore")
            self._arrays[source] = read_padding(path, rec.blocks)
        return self._arrays[source]

    def counts_at(self, plan, n: int) -> dict[str, dict[str, int]]:
        """``plan.counts_at(n)`` with the padding of best-fit blocks taken out of the tokens
        (the plan knows only a split's last-block padding)."""
        out = plan.counts_at(n)
        for s, p in enumerate(plan.sources):
            if self.manifest.split(p.name, self.split).padding is not None:
                pads = self.array(p.name)
                out[p.name]["tokens"] -= served_sum(plan, s, pads, out[p.name]["samples"])
        return out
