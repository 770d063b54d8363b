"""Files of a build as local paths: read in place, or downloaded into the cache, never outside.

A build read from a bucket is data written by someone else: every relative path it leads to is
checked to be plain components (`_relative`), and every path is resolved and checked to stay
inside its root (`inside`: the build's folder for a read, the cache for a download) before
anything is opened. Remote downloads go through mosaicml-streaming's downloaders (its
credentials, retries, endpoints), imported only here and only when a build is remote.
"""

from __future__ import annotations

import os
from pathlib import Path

from mixer.artifacts.download import download, private_dir  # noqa: F401 (re-exported)
from mixer.errors import OutputError, UnsafeBuildError


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """mixer's cache: ``cache_dir``, $MIXER_CACHE or ~/.cache/mixer. Fetched and unpacked
    shards go to a folder per build; converted tiktoken vocabularies to ``tokenizers/``."""
    return Path(cache_dir or os.environ.get("MIXER_CACHE") or Path.home() / ".cache" / "mixer")


def is_remote(root: str) -> bool:
    """True for URLs that mosaicml-streaming downloads (s3://, gs://, oci://, hf://, ...)."""
    return "://" in str(root) and not str(root).startswith("file://")


def local_path(root: str) -> Path:
    return Path(str(root)[len("file://") :] if str(root).startswith("file://") else root)


def inside(path: Path, root: Path, what: str) -> Path:
    """``path`` if it resolves (symbolic links followed) inside ``root``, else UnsafeBuildError:
    the second guard, where a path is joined, behind the checks made when a file is loaded."""
    resolved, base = Path(path).resolve(), Path(root).resolve()
    if not resolved.is_relative_to(base):
        raise UnsafeBuildError(
            f"{path}: {what} resolves to {resolved}, outside {base}; refused (a build's files"
            " stay inside it, and what is fetched for it inside the cache)"
        )
    return resolved


def _relative(rel: str) -> str:
    """``rel`` if it is plain relative path components (no ``..``, no root, no scheme)."""
    parts = rel.split("/")
    bad = rel.startswith("/") or "\\" in rel or ":" in rel
    if bad or any(p in ("", ".", "..") for p in parts):
        raise UnsafeBuildError(f"{rel!r}: not a plain relative path inside a build; refused")
    return rel


def fetch(
    root: str,
    rel: str,
    dest: Path,
    *,
    within: Path,
    size: int | None = None,
    limit: int | None = None,
    fresh: bool = False,
) -> Path:
    """``root/rel`` as a local file: the file itself if local (it must resolve inside the
    build), else downloaded to ``dest`` (inside ``within``, the cache) once, or again if
    ``fresh``. ``size``: the bytes the manifest declares; ``limit``: the most a file of its kind
    may take. A download is bounded by them before and while it runs (`mixer.artifacts.download`)
    and lands under a private name, renamed over ``dest`` once checked: any number of processes
    may fetch the same file at once, and none sees it missing or partial."""
    _relative(rel)
    if not is_remote(root):
        base = local_path(root)
        path = base / rel
        if not path.exists():
            raise OutputError(f"{path}: file is missing from the build; rebuild or restore it")
        inside(path, base, "a file of the build")
        return path
    inside(dest, within, "a download")
    url = f"{str(root).rstrip('/')}/{rel}"
    if fresh or not dest.exists():
        tmp = download(url, dest, size if size is not None else limit)
        _check_size(url, tmp, size)
        os.replace(tmp, dest)
    else:
        _check_size(url, dest, size)
    return dest


def _check_size(url: str, path: Path, size: int | None) -> None:
    got = path.stat().st_size
    if size is not None and got != size:
        path.unlink(missing_ok=True)
        raise OutputError(
            f"{url}: {got:,} bytes, the manifest says {size:,}: it was altered or is still being"
            " uploaded"
        )
