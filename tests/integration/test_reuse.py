"""Incremental builds: unchanged sources are linked, never read or tokenized again."""

from __future__ import annotations

import os

import pytest
import yaml

from mixer.artifacts.manifest import Manifest
from tests.helpers import TOKENIZER, demo_recipe, qwen_tiktoken_file


def write(path, recipe: dict):
    path.write_text(yaml.safe_dump(recipe))
    return path


def three_sources(root, **top) -> dict:
    return demo_recipe(root, seed=1, **top)


@pytest.fixture
def forbid(monkeypatch):
    """forbid("tokenize", "hash", "shards"): make those raise, to prove they do not happen."""
    import mixer.artifacts.shards
    import mixer.builder.orchestrate
    import mixer.builder.reuse
    import mixer.builder.task

    def boom(what):
        def f(*a, **k):
            raise AssertionError(f"a rebuild that should reuse everything did {what}")

        return f

    def apply(*what):
        if "tokenize" in what:
            monkeypatch.setattr(mixer.builder.task, "run_unit", boom("tokenize"))
            monkeypatch.setattr(
                mixer.builder.orchestrate, "BuildTokenizer", boom("load the tokenizer")
            )
        if "hash" in what:  # inputs (the tokenizer's file is hashed, it is not an input)
            real = mixer.builder.reuse.sha256_file
            monkeypatch.setattr(
                mixer.builder.reuse,
                "sha256_file",
                lambda p: real(p) if str(p) == str(TOKENIZER) else boom("read an input")(),
            )
        if "shards" in what:
            reader = mixer.artifacts.shards.ShardReader
            monkeypatch.setattr(reader, "__init__", boom("read a shard"))
            monkeypatch.setattr(mixer.builder.orchestrate, "SourceMerge", boom("pack a source"))

    return apply


def shard_inodes(out, source):
    return {p.name: p.stat().st_ino for p in (out / "sources" / source / "train").iterdir()}


def test_changing_weights_total_or_seed_only_replans(cli, tmp_path, forbid):
    recipe = three_sources(tmp_path)
    assert cli("build", write(tmp_path / "r.yaml", recipe), "-w", "1").exit_code == 0
    before = Manifest.load(tmp_path / "out")
    inodes = shard_inodes(tmp_path / "out", "books")
    recipe["sources"]["web"]["weight"] = 0.05
    recipe["seed"] = 99
    recipe["mixture"] = {"samples": 5000}
    forbid("tokenize", "hash", "shards")
    result = cli("build", write(tmp_path / "r.yaml", recipe), "-w", "1")
    assert result.exit_code == 0, result.output
    assert "reused built sources books, web, zh" in result.output
    after = Manifest.load(tmp_path / "out")
    assert after.sources["web"].weight == 0.05 and after.seed == 99
    for name in ("books", "web", "zh"):  # same blocks, the very same files (hard links)
        for split in ("train", "val"):
            a, b = before.split(name, split), after.split(name, split)
            assert a.shards == b.shards and a.blocks == b.blocks
    assert shard_inodes(tmp_path / "out", "books") == inodes
    s = cli("stats", tmp_path / "out", "--json")
    assert '"total_samples": 5000' in s.output


def test_touching_an_input_rehashes_it_and_still_reuses(cli, tmp_path, forbid):
    recipe = write(tmp_path / "r.yaml", three_sources(tmp_path))
    assert cli("build", recipe, "-w", "1").exit_code == 0
    f = sorted((tmp_path / "books").iterdir())[0]
    os.utime(f, ns=(1, 1))  # new modification time, same content
    forbid("tokenize", "shards")
    result = cli("build", recipe, "-w", "1")
    assert result.exit_code == 0 and "reused built sources books, web, zh" in result.output


def test_adding_a_source_tokenizes_only_that_source(cli, tmp_path, monkeypatch):
    import mixer.builder.orchestrate
    import mixer.builder.task

    recipe = three_sources(tmp_path)
    del recipe["sources"]["zh"]
    assert cli("build", write(tmp_path / "r.yaml", recipe), "-w", "1").exit_code == 0
    ran = []
    real = mixer.builder.task.run_unit
    monkeypatch.setattr(
        mixer.builder.task,
        "run_unit",
        lambda u, *a, **k: ran.append(u.source) or real(u, *a, **k),
    )
    recipe = three_sources(tmp_path)
    result = cli("build", write(tmp_path / "r.yaml", recipe), "-w", "1")
    assert result.exit_code == 0, result.output
    assert set(ran) == {"zh"} and "reused built sources books, web" in result.output
    result = cli("build", write(tmp_path / "r.yaml", recipe), "-w", "1", "-o", tmp_path / "all")
    for name in ("books", "web", "zh"):
        assert (
            Manifest.load(tmp_path / "out").split(name).shards
            == Manifest.load(tmp_path / "all").split(name).shards
        )


def test_a_changed_input_rebuilds_its_source(cli, tmp_path, monkeypatch):
    import mixer.builder.orchestrate
    import mixer.builder.task

    recipe = write(tmp_path / "r.yaml", three_sources(tmp_path))
    assert cli("build", recipe, "-w", "1").exit_code == 0
    (tmp_path / "web" / "fortunes.jsonl").write_text('{"text": "a brand new document"}\n')
    ran = []
    real = mixer.builder.task.run_unit
    monkeypatch.setattr(
        mixer.builder.task,
        "run_unit",
        lambda u, *a, **k: ran.append(u.source) or real(u, *a, **k),
    )
    result = cli("build", recipe, "-w", "1")
    assert result.exit_code == 0 and set(ran) == {"web"}
    assert "reused built sources books, zh" in result.output


def replay_build(cli, tmp_path):
    """Another recipe's build of the web source alone, in tmp_path/shared/replay-out."""
    shared = tmp_path / "shared"
    shared.mkdir()
    assert (
        cli(
            "build",
            write(shared / "r.yaml", demo_recipe(shared, {"web": 1}, output="replay-out")),
            "-w",
            "1",
        ).exit_code
        == 0
    )
    return shared


def test_a_source_from_another_build(cli, tmp_path):
    shared = replay_build(cli, tmp_path)
    recipe = three_sources(tmp_path)
    recipe["sources"]["replay"] = {"from": "shared/replay-out", "source": "web", "weight": 0.05}
    del recipe["sources"]["web"]
    result = cli("build", write(tmp_path / "r.yaml", recipe), "-w", "1")
    assert result.exit_code == 0, result.output
    assert "reused built source replay" in result.output
    mine, theirs = Manifest.load(tmp_path / "out"), Manifest.load(shared / "replay-out")
    assert mine.split("replay").shards == theirs.split("web").shards
    assert mine.sources["replay"].weight == 0.05
    assert cli("verify", tmp_path / "out").exit_code == 0
    from mixer import StreamingMixture

    got = {x["source"] for x in StreamingMixture(tmp_path / "out", cache_dir=tmp_path / "c")}
    assert got == {"books", "zh", "replay"}


@pytest.mark.parametrize(
    "change,message",
    [
        ({"seq_len": 32}, "was built with seq_len 64, this recipe uses 32"),
        ({"tokenizer": "qwen"}, "was built with tokenizer fingerprint"),
        ({"tokenizer": {"path": str(TOKENIZER), "bos": True}}, "was built with bos_id None"),
    ],
)
def test_mismatched_reused_sources_are_refused(cli, tmp_path, change, message):
    replay_build(cli, tmp_path)
    recipe = three_sources(tmp_path)
    recipe["sources"]["web"] = {"from": "shared/replay-out", "weight": 0.05}
    if change.get("tokenizer") == "qwen":
        change = {"tokenizer": {"tiktoken": str(qwen_tiktoken_file()), "pattern": "qwen"}}
    recipe.update(change)
    result = cli("build", write(tmp_path / "r.yaml", recipe), "-w", "1")
    assert result.exit_code == 2
    assert "sources.web.from:" in result.output and message in result.output
    assert not (tmp_path / "out").exists()


def test_from_a_folder_that_is_not_a_build(cli, tmp_path):
    recipe = three_sources(tmp_path)
    recipe["sources"]["web"] = {"from": "nowhere", "weight": 0.1}
    result = cli("build", write(tmp_path / "r.yaml", recipe), "-w", "1")
    assert result.exit_code == 2 and "sources.web.from:" in result.output
    assert "no such output folder" in result.output
