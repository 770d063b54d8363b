"""The characters of a record that a piece of a block holds: the record re-read from its input
file and encoded again, with offsets, by the build's tokenizer (`mixer.report.provenance`).

An input file that changed since the build (its size or time differs from the manifest's
record of it, and so does its sha256; or it is gone) is said so in one line, instead of
showing text the block was not made of; so is a record that no longer encodes to the
document's tokens.
"""

from __future__ import annotations

import os

from mixer.artifacts.manifest import Manifest
from mixer.builder.reread import Changed, document_pieces
from mixer.identity import sha256_file


class Texts:
    """Re-reads and encodes records for one build; input checks and documents are cached."""

    def __init__(self, manifest: Manifest, cache_dir=None):
        self.manifest, self.cache_dir = manifest, cache_dir
        self._tok = None
        self._inputs: dict[str, str | None] = {}  # file -> why it cannot be re-read (None: ok)
        self._docs: dict[tuple, tuple] = {}

    def piece(self, table, p: dict) -> dict:
        """{"chars": [a, b] of the record's text, "text", "note"} for a piece of
        `provenance.block_pieces`; ``chars`` and ``text`` None (and ``note`` why) when the
        record cannot be re-read as it was."""
        hf = p["file"].startswith("hf:")
        why = None if hf else self._changed(p["source"], p["unit"]["file"])
        if why is None:
            try:
                text, offsets = self._document(table, p)
            except Changed as e:
                why = f"{p['file']}: {e}: the input changed since the build"
            except OSError as e:
                why = f"{p['file']}: cannot be read ({e.strerror or e})"
        if why is not None:
            return {"chars": None, "text": None, "note": why}
        a, b = p["span"]
        inside = [o for o in offsets[a:b] if o is not None]
        if inside:
            chars = [min(o[0] for o in inside), max(o[1] for o in inside)]
        else:  # only BOS/EOS: an empty range where they stand
            at = len(text) if a > 0 else 0
            chars = [at, at]
        return {"chars": chars, "text": text[chars[0] : chars[1]], "note": None}

    def _changed(self, source: str, path: str) -> str | None:
        if path not in self._inputs:
            self._inputs[path] = _input_problem(self.manifest, source, path)
        return self._inputs[path]

    def _document(self, table, p: dict) -> tuple[str, list]:
        """(the document's text, per token its (start, end) characters or None for BOS/EOS)."""
        doc = p["doc"]
        key = (p["source"], p["split"], doc["index"])
        if key not in self._docs:
            hf = self.manifest.sources[p["source"]].inputs.hf
            texts = document_pieces(table.meta["reading"], p["unit"], doc, hf)
            ids, offsets = self._encode(texts)
            if len(ids) != doc["tokens"]:
                raise Changed(
                    f"the record encodes to {len(ids):,} tokens, the build's document had"
                    f" {doc['tokens']:,}"
                )
            self._docs[key] = ("".join(texts), offsets)
        return self._docs[key]

    def _encode(self, texts: list[str]) -> tuple[list[int], list]:
        """Ids and offsets as the build's encoder made them: pieces encoded apart, special-token
        text as plain text, BOS before the first and EOS after the last, by id."""
        tok = self._tokenizer()
        t = self.manifest.tokenizer
        ids: list[int] = [t.bos_id] if t.bos_id is not None else []
        offsets: list = [None] * len(ids)
        shift = 0
        for text, enc in zip(texts, tok.encode_batch(texts, add_special_tokens=False), strict=True):
            ids += enc.ids
            offsets += [(a + shift, b + shift) for a, b in enc.offsets]
            shift += len(text)
        if t.eos_id is not None:
            ids.append(t.eos_id)
            offsets.append(None)
        return ids, offsets

    def _tokenizer(self):
        if self._tok is None:
            from mixer.artifacts.fetch import cache_root
            from mixer.report.build_tokenizer import build_tokenizer

            cache = cache_root(self.cache_dir) / self.manifest.fingerprint[:16]
            self._tok = build_tokenizer(self.manifest, cache)
            self._tok.encode_special_tokens = True
        return self._tok


def _input_problem(manifest: Manifest, source: str, path: str) -> str | None:
    """Why ``path`` is not the file the build read (None: it is): gone, or other bytes. Its
    size and modification time unchanged mean unchanged (as the build's reuse decides);
    otherwise its sha256 decides, when the manifest has one (a source with ``take`` has none)."""
    files = manifest.sources[source].inputs.files or ()
    rec = next((f for f in files if f.path == path), None)
    try:
        st = os.stat(path)
    except OSError:
        return f"{path}: the input file is gone; restore it to see the text"
    if rec is None or (rec.bytes, rec.mtime_ns) == (st.st_size, st.st_mtime_ns):
        return None
    if rec.sha256 is not None and sha256_file(path) == rec.sha256:
        return None
    return f"{path}: the input file changed since the build (other bytes); text not shown"
