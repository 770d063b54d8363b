"""Damaged outputs: every reader names the file, none serves a wrong token."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from mixer import StreamingMixture
from mixer.errors import OutputError
from tests.helpers import build_demo


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_demo(tmp_path_factory.mktemp("corrupt"), {"zh": 1}, seq_len=32, shard_size="16KiB")


@pytest.fixture
def out(built, tmp_path):
    copy = tmp_path / "out"
    shutil.copytree(built, copy)
    return copy


def first_shard(out):
    return sorted((out / "sources" / "zh" / "train").glob("shard.*.mds.zstd"))[0]


def test_a_good_build_verifies(cli, out):
    result = cli("verify", out)
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"{out}: ok (") and "blocks verified" in result.output


def test_flipped_bytes_are_refused_by_the_mixture_and_listed_by_verify(cli, out, tmp_path):
    shard = first_shard(out)
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    ds = StreamingMixture(out, cache_dir=tmp_path / "cache")
    with pytest.raises(OutputError, match=rf"{shard.name}: shard does not match the manifest"):
        list(ds)
    result = cli("verify", out)
    assert result.exit_code == 1
    assert f"problem: {shard}: sha256 differs from the manifest" in result.output
    assert result.output.strip().endswith("1 problem(s)")


def test_truncated_and_missing_shards_are_named_by_stats(cli, out):
    shard = first_shard(out)
    shard.write_bytes(shard.read_bytes()[:100])
    result = cli("stats", out)
    assert result.exit_code == 2
    assert f"{shard}: shard has 100 bytes, the manifest says" in result.output
    shard.unlink()
    result = cli("stats", out)
    assert result.exit_code == 2 and f"{shard}: shard is missing" in result.output
    assert f"problem: {shard}: shard is missing" in cli("verify", out).output


def test_an_edited_manifest_is_refused(cli, out):
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["sources"]["zh"]["weight"] = 0.5
    (out / "manifest.json").write_text(json.dumps(manifest))
    result = cli("stats", out)
    assert result.exit_code == 2 and "manifest was altered (fingerprint mismatch)" in result.output
    assert cli("verify", out).exit_code == 1


def test_an_edited_plan_is_refused(cli, out):
    plan = json.loads((out / "plan.json").read_text())
    plan["total"] += 1
    (out / "plan.json").write_text(json.dumps(plan))
    result = cli("stats", out)
    assert result.exit_code == 2 and "plan was altered" in result.output
    with pytest.raises(OutputError, match="plan was altered"):
        StreamingMixture(out)


def test_unexpected_files_and_bad_blocks_are_reported(cli, out):
    (out / "sources" / "zh" / "val" / "stray.bin").write_bytes(b"x")
    result = cli("verify", out)
    assert result.exit_code == 1 and "stray.bin: unexpected file" in result.output


def test_the_cache_never_serves_a_shard_it_did_not_verify(out, tmp_path):
    good = [x["input_ids"].copy() for x in StreamingMixture(out, cache_dir=tmp_path / "c")]
    shard = first_shard(out)
    data = bytearray(shard.read_bytes())
    data[-5] ^= 0x01
    shard.write_bytes(bytes(data))
    with pytest.raises(OutputError):  # a fresh cache: the damaged shard is refused
        list(StreamingMixture(out, cache_dir=tmp_path / "d"))
    # the cache filled from the intact shard still serves exactly what was verified
    again = [x["input_ids"] for x in StreamingMixture(out, cache_dir=tmp_path / "c")]
    assert all(np.array_equal(a, b) for a, b in zip(good, again, strict=True))
