"""Typed artifacts and the user mistakes around them: one line each, never a traceback."""

from __future__ import annotations

import json
import os
import re
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mixer.artifacts.manifest import Manifest
from mixer.errors import OutputError, UsageError
from mixer.identity import digest
from mixer.plan import Plan
from tests.helpers import TOKENIZER, build_demo


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_demo(tmp_path_factory.mktemp("records"))


def _copy(built, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(built, out)
    return out


def _edit(path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_typed_records_round_trip_the_json_exactly(built):
    data = json.loads((built / "manifest.json").read_text())
    m = Manifest.from_dict(data, built)
    assert m.to_dict() == data
    assert m.computed_fingerprint() == data["fingerprint"] == Manifest.load(built).fingerprint
    assert (
        m.sources["books"].train.shards[0].sha256
        == data["sources"]["books"]["train"]["shards"][0]["sha256"]
    )
    plan = json.loads((built / "plan.json").read_text())
    p = Plan.from_dict(plan)
    assert {**p.to_dict(), "fingerprint": p.fingerprint} == plan


def test_digest_refuses_what_is_not_json():
    assert digest({"b": 1, "a": [1, "é"]}) == digest({"a": [1, "é"], "b": 1})
    with pytest.raises(TypeError):
        digest({"a": object()})  # never hashed through str(): that could be a memory address


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["sources"]["books"]["train"].update(extra=1),
            r"manifest\.json: not a manifest this mixer can read: "
            r"manifest\.sources\.books\.train\.extra: unknown key",
        ),
        (
            lambda d: d["sources"]["web"]["train"]["shards"][0].update(samples="12"),
            r"manifest\.sources\.web\.train\.shards\[0\]\.samples: expected int, got a string",
        ),
        (lambda d: d.update(format=2), r"manifest format 2 is not 1; upgrade mixer to read it"),
        (lambda d: d.update(format=0), r"manifest format 0 is not 1; rebuild with this version"),
    ],
)
def test_a_manifest_mixer_cannot_read_is_one_line(built, tmp_path, cli, change, message):
    out = _copy(built, tmp_path)
    _edit(out / "manifest.json", change)
    with pytest.raises(OutputError, match=message):
        Manifest.load(out)
    result = cli("stats", out)
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(extra=1), r"plan\.json: not a plan this mixer can read: plan\.extra"),
        (
            lambda d: d["sources"][0].update(weight="x"),
            r"plan\.sources\[0\]\.weight: expected float",
        ),
        (lambda d: d.update(format=9), r"plan format 9 is not 1; upgrade mixer to read it"),
    ],
)
def test_a_plan_mixer_cannot_read_is_one_line(built, tmp_path, cli, change, message):
    out = _copy(built, tmp_path)
    _edit(out / "plan.json", change)
    for command in ("stats", "inspect"):
        args = ("--sample", "0") if command == "inspect" else ()
        result = cli(command, out, *args)
        assert result.exit_code == 2, result.output
        assert result.output.count("\n") == 1 and "Traceback" not in result.output
        assert result.output.startswith("error: ") and re.search(message, result.output)
    result = cli("verify", out)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert re.search(message, result.output), result.output


def test_a_size_with_a_wrong_unit_is_one_line(cli, write_recipe):
    path = write_recipe(
        {
            "seq_len": 8,
            "tokenizer": {"path": str(TOKENIZER)},
            "shard_size": "64ib",
            "sources": {"s": {"files": str(TOKENIZER), "weight": 1}},
        }
    )
    result = cli("validate", path)
    assert result.exit_code == 2
    assert "shard_size: expected a size such as 64MiB, 500MB or 65536, got '64ib'" in result.output


def _one_source(write_recipe, files: str, seq_len: int = 64):
    return write_recipe(
        {
            "seq_len": seq_len,
            "tokenizer": {"path": str(TOKENIZER)},
            "sources": {"bad": {"files": files, "weight": 1}},
            "output": "out",
        }
    )


def test_a_source_with_only_an_empty_file_names_it(cli, write_recipe, tmp_path):
    (tmp_path / "empty.jsonl").write_bytes(b"")
    result = cli("build", _one_source(write_recipe, "empty.jsonl"), "-w", "1")
    assert result.exit_code == 2
    assert "sources.bad: no document kept (no record in " in result.output
    assert "empty.jsonl (0 bytes)" in result.output


@pytest.mark.parametrize("damage", ["zero-byte", "truncated"])
def test_a_source_with_only_a_broken_parquet_names_it(cli, write_recipe, tmp_path, damage):
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"text": ["one document"] * 50}), path)
    path.write_bytes(b"" if damage == "zero-byte" else path.read_bytes()[:-40])
    result = cli("build", _one_source(write_recipe, "p.parquet"), "-w", "1")
    assert result.exit_code == 2, result.output
    assert "sources.bad: no document kept (unreadable_file 1: unreadable_file at " in result.output
    assert "p.parquet" in result.output.split("no document kept")[1]


def test_a_source_too_short_for_a_block_names_its_file(cli, write_recipe, tmp_path):
    (tmp_path / "short.jsonl").write_text(json.dumps({"text": "a few words"}) + "\n")
    result = cli("build", _one_source(write_recipe, "short.jsonl"), "-w", "1")
    assert result.exit_code == 2
    assert "sources.bad: 1 training documents of" in result.output
    assert "short.jsonl" in result.output and "make no block of 64 tokens" in result.output


def test_address_without_ray_is_a_usage_error(cli, write_recipe, tmp_path):
    (tmp_path / "d.jsonl").write_text(json.dumps({"text": "words " * 50}) + "\n")
    result = cli("build", _one_source(write_recipe, "d.jsonl", 8), "--address", "h:6379")
    assert result.exit_code == 2
    assert "--address is the Ray cluster's: give it with --engine ray" in result.output
    assert not (tmp_path / "out").exists()


def test_usage_mistakes_are_usage_errors_not_state_errors(built):
    from mixer import StreamingMixture

    with pytest.raises(UsageError, match=r"batch_size must be >= 1, got 0"):
        StreamingMixture(built, batch_size=0)
    ds = StreamingMixture(built, cache_dir=built.parent / "cache")
    with pytest.raises(UsageError, match=r"n must be in \[0, "):
        ds.counts_at(-1)


def test_a_one_worker_build_leaves_the_callers_environment_alone(tmp_path, monkeypatch):
    monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
    build_demo(tmp_path)
    assert "TOKENIZERS_PARALLELISM" not in os.environ
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "true")
    build_demo(tmp_path / "again")
    assert os.environ["TOKENIZERS_PARALLELISM"] == "true"
