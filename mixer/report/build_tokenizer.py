"""The tokenizer a build recorded, loaded for a report (`mixer inspect`): the very bytes whose
sha256 the manifest lists, read as a regular file of the build (`mixer.artifacts.buildfile`)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from mixer.artifacts.buildfile import read_checked
from mixer.artifacts.fetch import fetch
from mixer.artifacts.manifest import MAX_RECORD_BYTES, Manifest
from mixer.errors import OutputError

NAME = "tokenizer.json"


def build_tokenizer(manifest: Manifest, cache: Path):
    """The build's tokenizer.json as a `tokenizers.Tokenizer`, checked against the manifest
    before it is parsed (a remote one downloaded into ``cache``)."""
    from tokenizers import Tokenizer

    want = manifest.tokenizer.files.get(NAME)
    path = fetch(manifest.location, f"tokenizer/{NAME}", cache / NAME, within=cache)
    root = cache if path.is_relative_to(cache) else manifest.root
    data = read_checked(path, root, "a tokenizer file", limit=MAX_RECORD_BYTES)
    if want is None or hashlib.sha256(data).hexdigest() != want:
        if path.is_relative_to(cache):
            path.unlink(missing_ok=True)
        raise OutputError(
            f"{path}: tokenizer file does not match the manifest (sha256 differs or not"
            " listed); rebuild the output or restore the file"
        )
    try:
        return Tokenizer.from_str(data.decode("utf-8"))  # the very bytes checked
    except Exception as e:  # noqa: BLE001 (tokenizers raises its own types, panics included)
        raise OutputError(f"{path}: not a tokenizer file ({type(e).__name__})") from None


def decode(tok, ids: list[int], where: str) -> str:
    """``ids`` as text; a tokenizer that fails or panics on them (tokenizers' Rust panics
    arrive as pyo3's PanicException, a BaseException) is a one-line OutputError."""
    try:
        return tok.decode(ids, skip_special_tokens=False)
    except Exception as e:  # noqa: BLE001 (tokenizers raises its own types)
        problem = f"{type(e).__name__}: {str(e)[:200]}"
    except BaseException as e:
        if type(e).__name__ != "PanicException":
            raise
        problem = f"it panicked: {str(e)[:200]}"
    raise OutputError(
        f"{where}: the build's tokenizer cannot decode its ids ({problem}); the tokenizer"
        " file is not one these ids were made with"
    )
