"""Every file mixer reads from a build is a regular file inside it, read no further than its
size: a record, index, shard or tokenizer file that is a FIFO, a link to /dev/zero or a link
out of the build ends in one line, at once (issue 21)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest

from mixer import StreamingMixture
from mixer.artifacts.download import TooLarge
from mixer.errors import OutputError
from tests.faults.test_untrusted import build_cli, local_copy, publish, records, reuse_recipe
from tests.helpers import build_demo
from tests.integration.test_remote import s3  # noqa: F401 (the moto S3 fixture)

SHARD = "sources/web/train/shard.00000.mds.zstd"
FILES = [
    "manifest.json",
    "plan.json",
    "sources/web/train/index.json",
    SHARD,
    "tokenizer/tokenizer.json",
]
KINDS = ["fifo", "dev-zero", "link-out"]


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return build_demo(
        tmp_path_factory.mktemp("files"), {"web": 1, "zh": 1}, seq_len=16, shard_size="8KiB"
    )


@contextlib.contextmanager
def deadline(seconds: int):
    """A hang (a FIFO opened for reading waits for a writer) becomes a failure."""

    def expire(*_):
        raise TimeoutError(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def plant(build: Path, rel: str, kind: str, tmp: Path) -> None:
    """Replace ``build/rel`` by a FIFO, a link to /dev/zero, or a link to a copy of the very
    file outside the build."""
    path = build / rel
    outside = tmp / f"outside-{path.name}"
    shutil.copyfile(path, outside)
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero" if kind == "dev-zero" else outside)


def refused(text: str) -> bool:
    return any(w in text for w in ("a FIFO, not a regular file", "outside", "not a regular"))


def one_line_error(result, code: int = 2) -> str:
    assert result.exit_code == code and "Traceback" not in result.output, result.output
    lines = [x for x in result.output.splitlines() if x.startswith(("error: ", "problem: "))]
    assert len(lines) >= 1, result.output
    return lines[0]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("rel", FILES)
def test_a_build_file_that_is_not_a_regular_file_inside_it_is_refused(
    out, tmp_path, cli, monkeypatch, rel, kind
):
    build = local_copy(out, tmp_path / "b")
    plant(build, rel, kind, tmp_path)
    monkeypatch.setenv("MIXER_CACHE", str(tmp_path / "cache"))
    name = Path(rel).name
    with deadline(60):
        problems = [ln for ln in cli("verify", build).output.splitlines() if name in ln]
        assert problems and refused(problems[0]), problems
        if rel in ("manifest.json", "plan.json", SHARD, "tokenizer/tokenizer.json"):
            line = one_line_error(cli("inspect", build, "--source", "web", "--index", "0"))
            assert name in line and refused(line), line
        if rel in ("manifest.json", "plan.json", SHARD):
            with pytest.raises(OutputError) as e:
                ds = StreamingMixture(build, cache_dir=tmp_path / "c")
                ds._store("web").tokens(np.arange(2))
            assert name in str(e.value) and refused(str(e.value)), e.value
        if rel in ("manifest.json", "sources/web/train/index.json"):
            line = one_line_error(build_cli(cli, reuse_recipe(tmp_path, build)))
            assert name in line and refused(line), line


def test_a_cache_file_that_is_a_link_or_fifo_is_refused(out, tmp_path):
    ds = StreamingMixture(out, cache_dir=tmp_path / "c")
    store = ds._store("web")
    store.tokens(np.arange(2))
    path = store.shard_path(0)
    path.unlink()
    os.mkfifo(path)
    store._maps.clear()
    with deadline(20), pytest.raises(OutputError, match=r"not a regular file; remove it"):
        store.tokens(np.arange(2))
    path.unlink()
    path.symlink_to("/dev/zero")
    with deadline(20), pytest.raises(OutputError, match=r"not a cache file"):
        store.tokens(np.arange(2))


# -- remote records are size-checked before and while downloading ---------------------------
def test_a_remote_record_beyond_the_limit_is_not_downloaded(out, s3, tmp_path, monkeypatch):  # noqa: F811
    url = publish(s3, out, "big", *records(out))
    monkeypatch.setattr("mixer.serve.cache.MAX_RECORD_BYTES", 1000)
    with pytest.raises(TooLarge, match=r"manifest\.json: [\d,]+ bytes, more than the 1,000 exp"):
        StreamingMixture(url, cache_dir=tmp_path / "c")
    assert [p for p in (tmp_path / "c").rglob("*") if p.is_file()] == []


def test_a_remote_object_that_grows_while_downloaded_is_cut(tmp_path, monkeypatch):
    """HEAD says small, the body goes on: the download stops one piece past the bound."""
    from streaming.base.storage.download import S3Downloader

    from mixer.artifacts import download

    class Body:
        served = 0

        def read(self, n):
            Body.served += n
            return bytes(n)

    class Client:
        def head_object(self, **_):
            return {"ContentLength": 10}

        def get_object(self, **_):
            return {"Body": Body()}

    monkeypatch.setattr(
        S3Downloader, "_create_s3_client", lambda self: setattr(self, "_s3_client", Client())
    )
    monkeypatch.setattr(download, "PIECE", 4096)
    monkeypatch.setattr(download, "_CLIENTS", {})
    with pytest.raises(TooLarge, match=r"s3://b/x: more than the 5,000 bytes expected"):
        download.download("s3://b/x", tmp_path / "x", 5000)
    assert Body.served <= 2 * 4096 and list(tmp_path.iterdir()) == []
