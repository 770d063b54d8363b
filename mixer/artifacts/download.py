"""One remote object downloaded to a private temporary file, never more than a bound.

mosaicml-streaming's downloaders write a whole object wherever its size: an object larger than
the manifest declares (or a 10 GB "manifest.json") would take its size on disk before it could
be refused. For S3 (the usual bucket) the object's size is asked first (HEAD) and the body read
with a byte range ending one byte past the bound, counted as it comes: refused before and while
downloading. Other schemes go through streaming's downloaders (their credentials, retries and
endpoints), and are size-checked once written, before the file is renamed into place.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import urllib.parse
from pathlib import Path

from mixer.errors import OutputError

PIECE = 1 << 20


class TooLarge(OutputError):
    """A remote object of more bytes than the bound."""


def download(url: str, dest: Path, most: int | None) -> Path:
    """``url`` written to a new temporary file beside ``dest`` (returned; the caller renames
    it): at most ``most`` bytes, else TooLarge (the partial file removed)."""
    private_dir(dest.parent)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{secrets.token_hex(4)}.part")
    try:
        if url.startswith("s3://") and most is not None:
            _s3(url, tmp, most)
        else:
            from streaming.base.storage import CloudDownloader

            CloudDownloader.direct_download(url, str(tmp))
        got = tmp.stat().st_size
        if most is not None and got > most:
            raise TooLarge(f"{url}: {got:,} bytes, more than the {most:,} expected")
    except OutputError:
        tmp.unlink(missing_ok=True)
        raise
    except Exception as e:  # noqa: BLE001 (each storage backend raises its own types)
        tmp.unlink(missing_ok=True)
        raise OutputError(f"{url}: cannot download ({type(e).__name__}: {e})") from None
    return tmp


_CLIENTS: dict[tuple, object] = {}  # per process and endpoint (not shared across a fork)


def _s3_client():
    """The client streaming's S3Downloader makes (made once per process: ~0.1 s each)."""
    key = (os.getpid(), os.environ.get("S3_ENDPOINT_URL"))
    if key not in _CLIENTS:
        from streaming.base.storage.download import S3Downloader

        loader = S3Downloader()
        loader._create_s3_client()  # noqa: SLF001 (its client, so its settings)
        _CLIENTS[key] = loader._s3_client  # noqa: SLF001
    return _CLIENTS[key]


def _s3(url: str, tmp: Path, most: int) -> None:
    """A bounded S3 download, through the client streaming's S3Downloader makes (its
    credentials, endpoint ($S3_ENDPOINT_URL) and retries)."""
    client = _s3_client()
    obj = urllib.parse.urlparse(url)
    bucket, key = obj.netloc, obj.path.lstrip("/")
    size = client.head_object(Bucket=bucket, Key=key)["ContentLength"]
    if size > most:
        raise TooLarge(f"{url}: {size:,} bytes, more than the {most:,} expected; not downloaded")
    body = client.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{most}")["Body"]
    got = 0
    with open(tmp, "xb") as f:
        while piece := body.read(PIECE):
            got += len(piece)
            if got > most:  # grown since the HEAD: stop at once
                raise TooLarge(f"{url}: more than the {most:,} bytes expected; refused")
            f.write(piece)


def private_dir(path: Path) -> Path:
    """``path`` and its missing parents created private to the user (0700, as ssh's and most
    caches' folders): what other users of the machine could read or swap is not served."""
    missing = []
    p = Path(path)
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    for p in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made meanwhile by another process
            os.mkdir(p, 0o700)
    return Path(path)
