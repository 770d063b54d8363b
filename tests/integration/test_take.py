"""`take:` budgets through real builds: what is taken, for every input kind, for any workers and
either engine; reading stops early; validation among the taken documents; reuse and refusals."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import yaml

from mixer.artifacts.manifest import Manifest
from mixer.builder import build
from mixer.errors import RecipeError
from mixer.recipe import load_recipe, parse_recipe
from tests.helpers import TOKENIZER


def _jsonl(path: Path, docs: int, tag: str = "") -> Path:
    with open(path, "w") as f:
        for i in range(docs):
            words = " ".join(f"w{(i * 7 + k) % 97}" for k in range(5 + i % 40))
            f.write(json.dumps({"text": f"{tag} document {i}: {words}."}) + "\n")
    return path


def _parquet(path: Path, docs: int, groups: int) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = [
        f"row {i}: " + " ".join(f"v{(i + k) % 53}" for k in range(10 + i % 30)) for i in range(docs)
    ]
    pq.write_table(pa.table({"text": texts}), path, row_group_size=docs // groups)
    return path


def _recipe(root: Path, sources: dict, **top) -> dict:
    return {
        "seq_len": 32,
        "tokenizer": {"path": str(TOKENIZER)},
        "sources": sources,
        "output": str(root / "out"),
        **top,
    }


def _build(root: Path, data: dict, workers: int = 1, out: str = "out") -> Manifest:
    recipe = parse_recipe(data, base_dir=root, output=str(root / out))
    return build(recipe, workers=workers, show_progress=False)


def _files(root: Path, n: int = 4, docs: int = 400) -> list[str]:
    return [str(_jsonl(root / f"part{i}.jsonl", docs, tag=f"p{i}")) for i in range(n)]


def _shards(out: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }


def test_tokens_budget_takes_the_first_documents_in_input_order(tmp_path):
    files = _files(tmp_path)
    src = {"files": files, "weight": 1.0, "take": {"tokens": 9_000}}
    m = _build(tmp_path, _recipe(tmp_path, {"big": src}))
    t = m.sources["big"].take
    assert t.tokens >= 9_000 and t.measure == "tokens" and not t.exhausted
    assert t.tokens == m.sources["big"].train.tokens + m.sources["big"].val.tokens
    # the prefix: one document fewer would not meet the budget (same build with documents)
    by_docs = _build(
        tmp_path,
        _recipe(tmp_path, {"big": {**src, "take": {"documents": t.documents}}}),
        out="docs",
    )
    assert by_docs.sources["big"].take.tokens == t.tokens
    assert by_docs.sources["big"].take.selection == t.selection
    fewer = _build(
        tmp_path,
        _recipe(tmp_path, {"big": {**src, "take": {"documents": t.documents - 1}}}),
        out="fewer",
    )
    assert fewer.sources["big"].take.tokens < 9_000
    assert t.stopped.startswith(files[t.units - 1]) and " byte " in t.stopped
    assert [f.path for f in m.sources["big"].inputs.files] == files[: t.units]
    assert all(f.sha256 is None for f in m.sources["big"].inputs.files)  # nothing hashed whole


def test_same_documents_for_any_workers_and_either_engine(tmp_path):
    files = _files(tmp_path, n=6)
    data = _recipe(
        tmp_path,
        {
            "big": {"files": files, "weight": 0.7, "take": {"tokens": 20_000}},
            "all": {"files": files[:1], "weight": 0.3},
        },
        validation={"fraction": 0.1},
    )
    one = _build(tmp_path, data, workers=1, out="w1")
    two = _build(tmp_path, data, workers=2, out="w2")
    assert one.fingerprint == two.fingerprint
    assert _shards(tmp_path / "w1") == _shards(tmp_path / "w2")
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'mixer[ray]')")
    try:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"Ray cannot start on this machine: {e}")
    try:
        recipe = parse_recipe(data, base_dir=tmp_path, output=str(tmp_path / "ray"))
        r = build(recipe, workers=2, show_progress=False, engine="ray")
    finally:
        ray.shutdown()
    assert r.fingerprint == one.fingerprint
    assert _shards(tmp_path / "ray") == _shards(tmp_path / "w1")


def test_parquet_row_groups_stop_early(tmp_path):
    path = _parquet(tmp_path / "t.parquet", 4000, groups=20)
    src = {"files": [str(path)], "weight": 1.0, "take": {"documents": 500}}
    m = _build(tmp_path, _recipe(tmp_path, {"pq": src}))
    t = m.sources["pq"].take
    assert t.documents == 500 and t.units == 3  # 200 rows per group: the third holds row 500
    assert t.stopped == f"{path} row group 2 row 100"
    assert t.bytes_read < path.stat().st_size // 4


def test_hf_streaming_reads_shards_in_order_and_stops(tmp_path, cli):
    files = _files(tmp_path, n=5, docs=300)
    src = {
        "hf": {"path": "json", "data_files": files, "streaming": True},
        "weight": 1.0,
        "take": {"documents": 450},
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(_recipe(tmp_path, {"web": src})))
    result = cli("build", tmp_path / "r.yaml", "-w", "1")
    assert result.exit_code == 0, result.output
    units = [json.loads(x) for x in result.output.splitlines() if x.startswith('{"event": "unit"')]
    assert [u["unit"] for u in units] == [0, 1]  # shards 2-4 never opened
    t = Manifest.load(tmp_path / "out").sources["web"].take
    assert (t.documents, t.units, t.bytes_read) == (450, 2, None)
    assert t.stopped == "hf:json shard 1 row 150"


def test_fraction_is_a_hash_sample_independent_of_validation(tmp_path):
    files = _files(tmp_path, n=2, docs=2000)
    src = {"files": files, "weight": 1.0, "take": {"fraction": 0.25}}
    m = _build(tmp_path, _recipe(tmp_path, {"s": src}, validation={"fraction": 0.2}))
    rec = m.sources["s"]
    assert rec.take.stopped is None and rec.take.units == 2
    assert 800 <= rec.take.documents <= 1200  # a quarter of 4,000
    assert 0.12 <= rec.val.documents / rec.take.documents <= 0.28  # validation still 20%
    assert rec.train.documents + rec.val.documents == rec.take.documents


def test_validation_is_chosen_among_the_documents_taken(tmp_path):
    files = _files(tmp_path, n=4)
    src = {"files": files, "weight": 1.0, "take": {"tokens": 12_000}}
    m = _build(tmp_path, _recipe(tmp_path, {"s": src}, validation={"docs": 20}))
    rec = m.sources["s"]
    assert rec.val.documents == 20  # texts are distinct: exactly N held out
    assert rec.train.documents + rec.val.documents == rec.take.documents
    assert rec.take.units < 4  # no full pass for the N smallest hashes


def test_auto_takes_what_the_plan_needs_and_rebuilds_only_when_it_needs_more(tmp_path, cli):
    files = _files(tmp_path, n=6)
    data = _recipe(
        tmp_path,
        {
            "new": {"files": files[:1], "weight": 0.5},
            "replay": {"files": files[1:], "weight": 0.5, "take": "auto"},
        },
        validation={"docs": 10},
        mixture={"samples": 2000, "max_epochs": 4},
    )
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data))
    assert cli("build", path).exit_code == 0
    m = Manifest.load(tmp_path / "out")
    t = m.sources["replay"].take
    assert t.need.samples == 1000 and t.need.blocks == 1000 and t.need.margin_blocks == 20
    assert m.sources["replay"].train.blocks == 1020  # exactly the need and the margin
    assert t.units == 2  # the second file in part: one holds about 900 blocks
    # a lower weight: linked, nothing read
    data["sources"]["replay"]["weight"] = 0.45
    path.write_text(yaml.safe_dump(data))
    result = cli("build", path)
    assert "reused built sources new, replay" in result.output, result.output
    # a larger total needs more: rebuilt with a larger budget from the units already read
    data["mixture"]["samples"] = 3000  # replay: 1,421 samples
    path.write_text(yaml.safe_dump(data))
    result = cli("build", path)
    assert result.exit_code == 0, result.output
    assert "reused 2 of 2 finished units" in result.output.replace("\n", " "), result.output
    bigger = Manifest.load(tmp_path / "out").sources["replay"]
    assert bigger.train.blocks == 1421 + 29 and bigger.take.documents > t.documents
    data["mixture"]["samples"] = 6000  # now two more files are read, the first two are not
    path.write_text(yaml.safe_dump(data))
    result = cli("build", path)
    assert result.exit_code == 0, result.output
    assert "reused 2 of 4 finished units" in result.output.replace("\n", " "), result.output


def test_a_fixed_budget_too_small_for_the_plan_is_refused_with_the_amount(tmp_path, cli):
    files = _files(tmp_path, n=3)
    data = _recipe(
        tmp_path,
        {
            "new": {"files": files[:1], "weight": 0.5},
            "replay": {"files": files[1:], "weight": 0.5, "take": {"tokens": 3_000}},
        },
        mixture={"samples": 400, "max_epochs": 1},
    )
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data))
    result = cli("build", path)
    assert result.exit_code == 2
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: sources.replay.take: tokens 3,000 gave 94 train blocks"), last
    assert "need 200" in last and "raise take.tokens to about" in last


def test_stats_shows_what_was_taken(tmp_path, cli):
    files = _files(tmp_path, n=2)
    src = {"files": files, "weight": 1.0, "take": {"tokens": 5_000}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(_recipe(tmp_path, {"s": src})))
    assert cli("build", tmp_path / "r.yaml").exit_code == 0
    table = cli("stats", tmp_path / "out").output
    assert "s: taken " in table and "of the source (take: tokens 5,000; read" in table
    assert "stopped at " in table
    js = json.loads(cli("stats", tmp_path / "out", "--json").output)
    assert js["sources"]["s"]["take"]["measure"] == "tokens"


@pytest.mark.slow
def test_a_200_mb_file_is_read_only_as_far_as_its_take(tmp_path):
    """Early stop measured in bytes read by this process (/proc/self/io, rchar)."""
    line = json.dumps({"text": "the quick brown fox jumps over the lazy dog " * 4}) + "\n"
    block = (line * (1 << 14)).encode()  # ~3 MB
    path = tmp_path / "big.jsonl"
    with open(path, "wb") as f:
        while f.tell() < 200 << 20:
            f.write(block)
    size = path.stat().st_size
    src = {"files": [str(path)], "weight": 1.0, "take": {"tokens": 3_000_000}}
    recipe = parse_recipe(_recipe(tmp_path, {"big": src}), base_dir=tmp_path)

    def rchar() -> int:
        io = Path("/proc/self/io").read_text()
        return int(next(x for x in io.splitlines() if x.startswith("rchar")).split()[1])

    before, started = rchar(), time.perf_counter()
    m = build(recipe, workers=1, show_progress=False)
    read, seconds = rchar() - before, time.perf_counter() - started
    t = m.sources["big"].take
    assert t.tokens >= 3_000_000
    assert t.bytes_read < 40 << 20 and t.bytes_read < size // 5
    assert read < 80 << 20, f"read {read:,} bytes of a {size:,}-byte file"
    assert seconds < 60  # about 10 s here, with a test suite running beside it


def test_recipe_errors_name_the_key(tmp_path, write_recipe):
    files = _files(tmp_path, n=1, docs=10)
    base = _recipe(tmp_path, {"s": {"files": files, "weight": 1.0}})
    cases = [
        ({"take": "some"}, r"sources\.s\.take: expected `auto` or one of"),
        ({"take": {"tokens": 5, "documents": 3}}, r"sources\.s\.take: give exactly one of"),
        ({"take": {"fraction": 1.5}}, r"sources\.s\.take\.fraction: must be in \(0, 1\]"),
        ({"take": {"tokens": 0}}, r"sources\.s\.take\.tokens: must be >= 1"),
        ({"take": {"token": 5}}, r"sources\.s\.take\.token: unknown key \(did you mean 'tokens'"),
        ({"take": "auto"}, r"sources\.s\.take: auto needs the plan's total: set mixture\.samples"),
    ]
    for extra, match in cases:
        data = {**base, "sources": {"s": {**base["sources"]["s"], **extra}}}
        with pytest.raises(RecipeError, match=match):
            load_recipe(write_recipe(data))
    other = tmp_path / "other"
    other.mkdir()
    data = {**base, "sources": {"s": {"from": str(other), "weight": 1.0, "take": "auto"}}}
    with pytest.raises(RecipeError, match=r"sources\.s\.take: a `from:` source is linked"):
        load_recipe(write_recipe(data))


def test_without_take_nothing_changes_in_the_recipe_record(tmp_path):
    files = _files(tmp_path, n=1, docs=10)
    r = parse_recipe(_recipe(tmp_path, {"s": {"files": files, "weight": 1.0}}), base_dir=tmp_path)
    assert "take" not in r.to_dict()["sources"][0]
    assert os.path.exists(files[0])


def test_the_demo_replays_a_budgeted_source_without_warnings(cli, tmp_path):
    from tests.helpers import DATA, REPO

    out = tmp_path / "demo"
    assert cli("build", REPO / "recipes" / "demo.yaml", "-o", out).exit_code == 0
    result = cli("stats", out)
    assert "warning" not in result.output, result.output
    assert "web: taken " in result.output
    web = Manifest.load(out).sources["web"]
    assert web.take.need.samples == 40 and web.train.blocks == 41
    on_disk = sum(p.stat().st_size for p in (DATA / "web").iterdir())
    assert web.take.bytes_read < on_disk // 4


def test_dropping_take_reads_and_hashes_the_whole_source(tmp_path):
    files = _files(tmp_path, n=3)
    src = {"files": files, "weight": 1.0, "take": {"documents": 50}}
    _build(tmp_path, _recipe(tmp_path, {"s": src}))
    del src["take"]
    m = _build(tmp_path, _recipe(tmp_path, {"s": src}))
    rec = m.sources["s"]
    assert rec.take is None and rec.train.documents == 1200
    assert [f.path for f in rec.inputs.files] == files
    assert all(f.sha256 and len(f.sha256) == 64 for f in rec.inputs.files)
    assert not (tmp_path / ".out.units").exists()  # no budgeted source left to keep units for


def test_a_smaller_budget_after_a_larger_one_gives_a_fresh_builds_manifest(tmp_path):
    path = _jsonl(tmp_path / "one.jsonl", 6000)
    with open(path, "a") as f:
        f.write("{not json\n" * 3)  # after the first batch: a worker stopping early never sees it
    src = {"files": [str(path)], "weight": 1.0}
    big = _build(tmp_path, _recipe(tmp_path, {"s": {**src, "take": {"tokens": 400_000}}}))
    assert big.sources["s"].skipped == {"malformed_json": 3}
    small = _recipe(tmp_path, {"s": {**src, "take": {"tokens": 9_000}}})
    again = _build(tmp_path, small)  # the unit read whole before is not what 9,000 would read
    fresh = _build(tmp_path, small, out="fresh")
    assert again.sources["s"].skipped == fresh.sources["s"].skipped == {}
    assert again.fingerprint == fresh.fingerprint
