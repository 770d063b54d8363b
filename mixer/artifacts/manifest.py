"""manifest.json: what a build wrote, exactly; its canonical fingerprint; loading with checks."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from mixer.errors import OutputError

FORMAT = 1
FILENAME = "manifest.json"
SPLITS = ("train", "val")
_VOLATILE = ("created", "fingerprint")  # not part of the fingerprint


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def fingerprint(data: dict) -> str:
    """sha256 of the canonical JSON of ``data`` without its volatile keys (timestamps)."""
    stable = {k: v for k, v in data.items() if k not in _VOLATILE}
    return hashlib.sha256(canonical_json(stable).encode()).hexdigest()


class Manifest:
    """A loaded manifest: the dict as written, plus typed accessors."""

    def __init__(self, data: dict, root: Path):
        self.data, self.root = data, Path(root)
        self.location = str(root)  # where the shards are: this folder, or a remote URL

    @classmethod
    def load(cls, out_dir: str | os.PathLike) -> Manifest:
        root = Path(out_dir)
        path = root / FILENAME
        if not root.is_dir():
            raise OutputError(f"{root}: no such output folder (run `mixer build` first)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise OutputError(
                f"{root}: not a complete mixer build (no {FILENAME}); rerun `mixer build`"
            ) from None
        except (OSError, ValueError) as e:
            raise OutputError(f"{path}: unreadable manifest ({e})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise OutputError(
                f"{path}: manifest format {data.get('format') if isinstance(data, dict) else '?'}"
                f" is not {FORMAT}; rebuild with this version of mixer"
            )
        if data.get("fingerprint") != fingerprint(data):
            raise OutputError(f"{path}: manifest was altered (fingerprint mismatch); rebuild")
        return cls(data, root)

    def save(self) -> None:
        self.data["fingerprint"] = fingerprint(self.data)
        write_atomic(self.root / FILENAME, json.dumps(self.data, indent=2, sort_keys=True) + "\n")

    @property
    def fingerprint(self) -> str:
        return self.data["fingerprint"]

    @property
    def seq_len(self) -> int:
        return self.data["seq_len"]

    @property
    def dtype(self) -> str:
        return self.data["tokenizer"]["dtype"]

    @property
    def source_names(self) -> list[str]:
        return list(self.data["sources"])

    def split(self, source: str, split: str = "train") -> dict:
        if source not in self.data["sources"]:
            known = ", ".join(self.data["sources"])
            raise OutputError(f"{self.root}: no source {source!r} (sources: {known})")
        if split not in SPLITS:
            raise OutputError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        return self.data["sources"][source][split]

    def split_dir(self, source: str, split: str) -> Path:
        return self.root / "sources" / source / split


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
