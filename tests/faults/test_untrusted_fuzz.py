"""Hypothesis fuzz of a real build's manifest.json and plan.json, fingerprints recomputed.

Each example mutates one to three values (set to a hostile value, nudged by a little or a lot,
deleted, a key renamed: a source, a tokenizer file) and seals both files again, so that the
mutation gets past the fingerprint checks. Then every reader takes the build: StreamingMixture
(train and val), `mixer stats`, `mixer inspect`, `mixer verify`, locally and from S3. Each
must give one clear error, or serve only the build's own blocks where the mutation is
harmless (a weight, a count in a report); never a traceback, and never a file created outside
the cache.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mixer import StreamingMixture
from mixer.artifacts.shards import read_shard_file
from mixer.errors import MixerError
from tests.faults.test_untrusted import created_outside, local_copy, records, seal, tree
from tests.helpers import build_demo
from tests.integration.test_remote import s3  # noqa: F401 (the moto S3 fixture)

HOSTILE_STRINGS = [
    "../../../../../PWNED.txt",
    "/tmp/PWNED.txt",
    "~/.ssh/authorized_keys",
    "s3://other/shard.00000.mds.zstd",
    "file:///etc/passwd",
    "..",
    ".",
    "",
    "a/b",
    "shard.00000.mds.zstd",
    "shard.99999.mds.zstd",
    "web",
    "zh",
    "tokenizer.json",
    "uint8",
    "float64",
    "object",
    "V1000000000",
    "x\x1b[2J",
    "0" * 64,
]
NUDGES = [-1, 1, -16, 16, 4096, -(10**6), 10**6, 10**15]
VALUES = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, -1, 1, 2**16, 2**31, 2**32, 2**53, 2**63, 10**30]),
    st.sampled_from(HOSTILE_STRINGS),
    st.text(max_size=12),
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.lists(st.integers(-5, 10**6), max_size=4),
    st.just({}),
)
MUTATION = st.tuples(
    st.sampled_from(["manifest", "plan"]),
    st.integers(0, 10**6),
    st.sampled_from(["set", "nudge", "nudge", "delete", "rename", "rename-source"]),
    VALUES,
    st.sampled_from(NUDGES),
    st.sampled_from(HOSTILE_STRINGS),
)


def fuzz(examples: int):
    """Hypothesis settings for these tests: slow examples, the module's fixtures shared."""
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


_SKIP = {"recipe", "inputs", "identity", "created", "fingerprint", "skipped_examples"}


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return build_demo(
        tmp_path_factory.mktemp("fuzz"), {"web": 1, "zh": 1}, seq_len=16, shard_size="8KiB"
    )


class Blocks(set):
    """Blocks as bytes (a short repr: hypothesis prints its arguments)."""

    def __repr__(self) -> str:
        return f"<{len(self)} blocks>"


def blocks_of(folder: Path) -> Blocks:
    seen = Blocks()
    for path in folder.glob("**/shard.*.mds.zstd"):
        ids = read_shard_file(path, seq_len=16, dtype="uint16").all_ids()
        seen.update(row.tobytes() for row in ids)
    return seen


@pytest.fixture(scope="module")
def own_blocks(out) -> set[bytes]:
    """Every block of the build, as bytes: what any served sample must be one of."""
    return blocks_of(out / "sources")


@pytest.fixture(scope="module")
def own_train(out) -> dict[str, set[bytes]]:
    return {n: blocks_of(out / "sources" / n / "train") for n in ("web", "zh")}


def paths(obj, at=()) -> list[tuple]:
    """Every place in a JSON document (but the big or unread parts: recipe, inputs, ...)."""
    found = [at] if at else []
    items = (
        obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    )
    for k, v in items:
        if k not in _SKIP and not (k == "manifest" and not at):
            found += paths(v, (*at, k))
    return found


def mutate(m: dict, p: dict, mutation) -> None:
    which, i, op, value, nudge, name = mutation
    if op == "rename-source":  # a source renamed in both files: consistent, but its folder
        old = sorted(m["sources"])[i % len(m["sources"])]
        m["sources"] = {name if k == old else k: v for k, v in m["sources"].items()}
        for s in p["sources"]:
            s["name"] = name if s["name"] == old else s["name"]
        return
    doc = m if which == "manifest" else p
    where = paths(doc)
    path = where[i * 2654435761 % 2**32 % len(where)]  # spread: hypothesis favours small i
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    key = path[-1]
    if op == "delete":
        parent.pop(key)
    elif op == "rename" and isinstance(parent, dict):
        parent[name] = parent.pop(key)
    elif op == "nudge" and type(parent[key]) is int:
        parent[key] += nudge
    else:
        parent[key] = value


def hostile_records(out: Path, mutations) -> tuple[dict, dict]:
    m, p = records(out)
    for mutation in mutations:
        # a place an earlier mutation removed or retyped: this one does not apply
        with contextlib.suppress(KeyError, TypeError, IndexError, AttributeError):
            mutate(m, p, mutation)
    return seal(m, p)


def served(path: str, cache: Path, own_blocks: set[bytes]) -> None:
    """Serve a few batches of each split: each sample one of the build's own blocks."""
    for split in ("train", "val"):
        try:
            ds = StreamingMixture(path, split=split, batch_size=4, cache_dir=cache)
            for sample in itertools.islice(ds, 24):
                row = np.asarray(sample["input_ids"]).astype(np.uint16).tobytes()
                assert row in own_blocks, sample["index"]
                assert 0 <= sample["index"] < ds.total_samples
        except MixerError as e:
            assert "\n" not in str(e), e


def cli_readers(cli, build) -> None:
    for args in (
        ("stats", build, "--json"),
        ("inspect", build, "--sample", "0"),
        ("inspect", build, "--source", "web", "--split", "val"),
        ("verify", build),
    ):
        result = cli(*args)  # an exception would propagate: CliRunner(catch_exceptions=False)
        assert "Traceback" not in result.output
        if result.exit_code == 2:
            errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
            assert len(errors) == 1, result.output
        elif args[0] == "verify":
            assert result.exit_code in (0, 1), result.output
        else:
            assert result.exit_code == 0, result.output


@pytest.mark.slow
@fuzz(150)
@given(mutations=st.lists(MUTATION, min_size=1, max_size=3))
def test_fuzzed_local_builds_fail_clearly_or_serve_their_own_blocks(
    out, own_blocks, tmp_path, cli, mutations
):
    work = tmp_path / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    build = local_copy(out, work / "build", *hostile_records(out, mutations))
    cache = work / "cache"
    before = tree(tmp_path)
    os.environ["MIXER_CACHE"] = str(cache)  # inspect's default cache
    try:
        served(str(build), cache, own_blocks)
        cli_readers(cli, build)
    finally:
        del os.environ["MIXER_CACHE"]
    assert created_outside(before, tmp_path, cache) == []


@pytest.mark.slow
@fuzz(40)
@given(
    shift=st.integers(-(10**7), 10**7),
    shuffle=st.sampled_from(["blocks", "shards", "none"]),
    window=st.integers(1, 2**31),
    weight=st.floats(0, 1e300),
)
def test_plans_that_pass_the_checks_serve_each_source_its_own_blocks(
    out, own_train, tmp_path, shift, shuffle, window, weight
):
    """A plan changed consistently (samples moved between sources, past a source's blocks:
    repeats; another shuffle or window; any weight) is harmless: it still serves every
    source its own blocks, from its first batches to its last."""
    m, p = records(out)
    web, zh = (next(s for s in p["sources"] if s["name"] == n) for n in ("web", "zh"))
    shift = max(-web["num_samples"], min(shift, zh["num_samples"]))
    web["num_samples"] += shift
    zh["num_samples"] -= shift
    web["weight"] = weight
    p.update(shuffle=shuffle, window=window)
    work = tmp_path / "work"
    shutil.rmtree(work, ignore_errors=True)
    build = local_copy(out, work / "build", *seal(m, p))
    ds = StreamingMixture(build, batch_size=8, cache_dir=work / "cache")
    last = max(0, ds.total_samples // 8 - 4) * 8
    for start in (0, last):
        ds.load_state_dict({**ds.state_dict(), "samples_seen": start})
        for sample in itertools.islice(ds, 32):
            row = np.asarray(sample["input_ids"]).astype(np.uint16).tobytes()
            assert row in own_train[sample["source"]], sample["index"]


@pytest.mark.slow
@fuzz(12)
@given(mutations=st.lists(MUTATION, min_size=1, max_size=2))
def test_fuzzed_remote_builds_write_nothing_outside_the_cache(
    out,
    own_blocks,
    s3,  # noqa: F811
    tmp_path,
    mutations,
):
    upload, client = s3
    if not list(tmp_path.glob("uploaded")):
        upload(out, "fz")
        (tmp_path / "uploaded").touch()
    m, p = hostile_records(out, mutations)
    for name, data in (("manifest.json", m), ("plan.json", p)):
        client.put_object(Bucket="data", Key=f"fz/{name}", Body=json.dumps(data).encode())
    cache = tmp_path / "a" / "b" / "c" / "d" / "e" / "cache"  # a traversal lands in tmp_path
    shutil.rmtree(cache, ignore_errors=True)
    before = tree(tmp_path)
    served("s3://data/fz", cache, own_blocks)
    assert created_outside(before, tmp_path, cache) == []


BUILD_FILES = [
    "manifest.json",
    "plan.json",
    "sources/web/train/index.json",
    "sources/web/train/shard.00000.mds.zstd",
    "sources/zh/val/shard.00000.mds.zstd",
    "tokenizer/tokenizer.json",
]
FILE_KINDS = ["fifo", "dev-zero", "link-out", "link-in", "folder", "truncate", "extend", "zeros"]


def replace_file(build: Path, rel: str, kind: str, n: int, outside: Path) -> None:
    """``build/rel`` replaced (never written through: shards are hard links of the original)."""
    path = build / rel
    data = path.read_bytes()
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "link-out":
        outside.write_bytes(data)
        path.symlink_to(outside)
    elif kind == "link-in":
        path.symlink_to(build / ("plan.json" if rel != "plan.json" else "manifest.json"))
    elif kind == "folder":
        path.mkdir()
    else:
        body = {"truncate": data[: n % max(1, len(data))], "extend": data + bytes(n)}
        path.write_bytes(body.get(kind, bytes(len(data))))


@pytest.mark.slow
@fuzz(40)
@given(
    rel=st.sampled_from(BUILD_FILES), kind=st.sampled_from(FILE_KINDS), n=st.integers(0, 1 << 16)
)
def test_fuzzed_build_files_fail_clearly_or_serve_their_own_blocks(
    out, own_blocks, tmp_path, cli, rel, kind, n
):
    """A build file that is a FIFO, a link (to /dev/zero, out of the build, to another file of
    it), a folder, or of another size: one line or the build's own blocks; never a hang."""
    from tests.faults.test_untrusted_files import deadline

    work = tmp_path / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    build = local_copy(out, work / "build")
    replace_file(build, rel, kind, n, work / "outside")
    cache = work / "cache"
    before = tree(tmp_path)
    os.environ["MIXER_CACHE"] = str(cache)
    try:
        with deadline(300):
            served(str(build), cache, own_blocks)
            cli_readers(cli, build)
    finally:
        del os.environ["MIXER_CACHE"]
    assert created_outside(before, tmp_path, cache) == []
