"""Where a source's documents come from: files (globs expanded in order, types checked by
suffix) or a Hugging Face dataset (paths resolved against the recipe's folder)."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixer.errors import RecipeError
from mixer.recipe.keys import Keys, given

#: File types a source may list, longest suffix first.
FILE_KINDS = (".jsonl.gz", ".jsonl.zst", ".jsonl", ".json", ".parquet", ".txt")


def file_kind(path: str | os.PathLike) -> str | None:
    """The input type of ``path`` by its suffix (``".jsonl.zst"``...), or None if unsupported."""
    name = os.fspath(path).lower()
    return next((k for k in FILE_KINDS if name.endswith(k)), None)


@dataclass(frozen=True, kw_only=True)
class HFSpec:
    path: str  # a hub name, a builder name ("json", "parquet") or a resolved local folder
    name: str | None = None
    split: str = "train"
    data_files: Any = None  # str | list[str] | dict[str, str | list[str]], paths resolved
    revision: str | None = None
    streaming: bool = True


def parse_files(k: Keys, base: Path) -> tuple[str, ...]:
    raw = k.data["files"]
    patterns = [raw] if isinstance(raw, str) else raw
    if (
        not isinstance(patterns, list)
        or not patterns
        or not all(isinstance(p, str) for p in patterns)
    ):
        raise k.error("files: must be a glob or a non-empty list of paths/globs", key="files")
    k.used("files")
    files: list[str] = []
    for pattern in patterns:
        full = str(base / pattern)
        if glob.has_magic(pattern):
            matches = sorted(m for m in glob.glob(full, recursive=True) if os.path.isfile(m))
        else:
            matches = [full] if os.path.isfile(full) else []
        if not matches:
            raise RecipeError(
                f"{k.origin}: {k.path('files')}: no file matches {pattern!r} (in {base})"
            )
        for m in matches:
            if file_kind(m) is None:
                raise RecipeError(
                    f"{k.origin}: {k.path('files')}: {m}: unsupported file type"
                    f" (supported: {', '.join(FILE_KINDS)})"
                )
            files.append(str(Path(m).resolve()))
    return tuple(files)


def parse_hf(k: Keys, base: Path) -> HFSpec:
    path = k.str("path", required=True)
    local = base / path
    if local.exists():  # a local dataset folder or script; else a hub or builder name
        path = str(local.resolve())
    data_files = k.data.get("data_files")
    k.used("data_files")
    spec = given(
        HFSpec,
        path=path,
        name=k.str("name"),
        split=k.str("split"),
        data_files=_resolve_data_files(k, data_files, base),
        revision=k.str("revision"),
        streaming=k.bool("streaming"),
    )
    k.finish()
    return spec


def _resolve_data_files(k: Keys, value: Any, base: Path) -> Any:
    def one(p: Any) -> str:
        if not isinstance(p, str):
            raise k.error(
                "data_files: must be a path, a list of paths or a split mapping", key="data_files"
            )
        return p if "://" in p else str(base / p)

    if value is None:
        return None
    if isinstance(value, str):
        return one(value)
    if isinstance(value, list):
        return [one(p) for p in value]
    if isinstance(value, dict):
        return {
            str(s): ([one(p) for p in v] if isinstance(v, list) else one(v))
            for s, v in value.items()
        }
    return one(value)
