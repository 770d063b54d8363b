"""A build on S3 (moto's server standing in), read through mosaicml-streaming's downloaders."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from mixer import StreamingMixture
from mixer.errors import OutputError
from mixer.serve.mixture import CHUNK_SAMPLES
from tests.helpers import build_demo


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return build_demo(
        tmp_path_factory.mktemp("remote"),
        {"web": 1},
        seq_len=16,
        shard_size="8KiB",
        validation={},
        mixture={"shuffle": "shards", "window": 2},
    )


@pytest.fixture
def s3(monkeypatch):
    """An S3 endpoint on localhost with bucket 'data'; yields a function uploading a folder."""
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for key, value in {
        "S3_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket="data")

    def upload(folder, prefix):
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                client.upload_file(str(path), "data", f"{prefix}/{path.relative_to(folder)}")

    yield upload, client
    server.stop()


def test_remote_build_reads_like_the_local_one(out, s3, tmp_path):
    upload, _ = s3
    upload(out, "builds/web")
    local = list(StreamingMixture(out, cache_dir=tmp_path / "local"))
    remote_ds = StreamingMixture("s3://data/builds/web", cache_dir=tmp_path / "remote")
    remote = list(remote_ds)
    assert len(remote) == len(local) > 100
    for a, b in zip(local, remote, strict=True):
        assert a["index"] == b["index"] and (a["input_ids"] == b["input_ids"]).all()
    filled = list((tmp_path / "remote").rglob("shard-*.blk"))
    assert len(filled) == len(remote_ds.manifest.split("web").shards) > 2


def test_shard_aware_order_downloads_a_window_of_shards_first(out, s3, tmp_path):
    upload, _ = s3
    upload(out, "b")
    ds = StreamingMixture("s3://data/b", cache_dir=tmp_path / "c", batch_size=8)
    it = iter(ds)
    for _ in range(8):
        next(it)
    shards = ds.manifest.split("web").shards
    got = list((tmp_path / "c").rglob("shard-*.blk"))
    # The first chunk of samples covers a few windows of 2 shards, not the whole source.
    per_shard = min(s.samples for s in shards[:-1])
    assert len(got) <= 2 * (-(-CHUNK_SAMPLES // per_shard) // 2 + 1) < len(shards)
    assert np.asarray(next(it)["input_ids"]).shape == (16,)


def test_an_altered_remote_shard_is_refused(out, s3, tmp_path):
    upload, client = s3
    upload(out, "c")
    name = StreamingMixture(out, cache_dir=tmp_path / "x").manifest.split("web").shards[0].file
    data = (out / "sources" / "web" / "train" / name).read_bytes()
    client.put_object(
        Bucket="data", Key=f"c/sources/web/train/{name}", Body=data[:-10] + b"0123456789"
    )
    ds = StreamingMixture("s3://data/c", cache_dir=tmp_path / "c", source="web")
    with pytest.raises(OutputError, match=rf"{name}: shard does not match the manifest"):
        ds._store("web").tokens(np.arange(3))
