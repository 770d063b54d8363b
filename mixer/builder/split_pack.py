"""One split of one source being written: its packer (concat or best-fit), its shard writer,
its per-block padding file (best-fit) and its counters, ending in its `SplitRecord` and
ledger (`mixer.artifacts.ledger`)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mixer.artifacts.ledger import PADDING_DTYPE, PADDING_FILE, LedgerRecord, ledger_of
from mixer.artifacts.manifest import PaddingRecord, SplitRecord
from mixer.artifacts.shards import ShardWriter
from mixer.builder.pack import Packer
from mixer.builder.pack_bestfit import BestFitPacker
from mixer.identity import sha256_file
from mixer.recipe import Recipe, SourceSpec

HIST_BINS = 40  # document-length histogram: bin k counts lengths in [2^k, 2^(k+1))


class SplitPack:
    """Packs one split's documents into shards as they come (in unit order)."""

    def __init__(self, recipe: Recipe, spec: SourceSpec, dtype: str, pad_id: int, folder: Path):
        packing, window = recipe.packing_of(spec)
        self.seq_len, self.folder = recipe.seq_len, folder
        if packing == "bestfit":
            self.packer = BestFitPacker(recipe.seq_len, dtype, window, pad_id)
        else:
            self.packer = Packer(recipe.seq_len, dtype)
        self.writer = ShardWriter(
            folder, seq_len=recipe.seq_len, dtype=dtype, shard_size=recipe.shard_size
        )
        self.hist = np.zeros(HIST_BINS, np.int64)
        self.orders: list[np.ndarray] = []  # best-fit: layout orders not yet given to origins
        self._padding = open(folder / PADDING_FILE, "wb") if packing == "bestfit" else None  # noqa: SIM115

    def feed(self, tokens: np.ndarray, lengths: np.ndarray, continues: bool, whole) -> None:
        """Documents' tokens (the first continuing the previous feed's last if ``continues``);
        ``whole`` are the full lengths of the documents that start here (for the histogram)."""
        if lengths.size:
            self._write(self.packer.feed(tokens, lengths, continues=continues))
        if len(whole):
            bins = np.minimum(np.log2(whole).astype(np.int64), HIST_BINS - 1)
            self.hist += np.bincount(bins, minlength=HIST_BINS)

    def _write(self, packed) -> None:
        self.writer.write(packed)
        if packed.padding is not None:
            self._padding.write(packed.padding.astype(PADDING_DTYPE).tobytes())
            self.orders.append(packed.order)

    def close(self, remainder: str, pad_id: int) -> tuple[int, int]:
        """Pack what is held: (dropped tokens, padding tokens of that last packing)."""
        last, dropped, padding = self.packer.finish(remainder, pad_id)
        self._write(last)
        return dropped, padding

    def finish(self, dropped: int, padding: int, skipped: dict[str, int]):
        """(the split's record, its ledger), after `close`."""
        padding_rec = None
        if self._padding is not None:
            self._padding.close()
            path = self.folder / PADDING_FILE
            size = os.path.getsize(path)
            padding_rec = PaddingRecord(file=PADDING_FILE, bytes=size, sha256=sha256_file(path))
            padding = self.packer.padding_tokens
        rec = SplitRecord(
            documents=self.packer.num_documents,
            tokens=self.packer.num_tokens,
            blocks=self.writer.num_blocks,
            dropped_tokens=dropped,
            padding_tokens=padding,
            shards=self.writer.finish(),
            doc_length_log2_hist=tuple(np.trim_zeros(self.hist, "b").tolist()),
            skipped=skipped,
            padding=padding_rec,
        )
        return rec, self.ledger(rec)

    def ledger(self, rec: SplitRecord) -> LedgerRecord:
        return ledger_of(rec.blocks, self.seq_len, self.packer.documents_cut, rec.padding_tokens)
