"""`mixer build` end to end through the CLI: outputs, determinism, splits, packing, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mixer.artifacts.manifest import Manifest
from mixer.artifacts.shards import read_shard_file
from tests.helpers import REPO, TOKENIZER, demo_recipe, qwen_tiktoken_file


def blocks(out: Path, source: str, split: str = "train") -> list:
    """All blocks of one split, as (input_ids, starts) in order."""
    m = Manifest.load(out)
    rec = m.split(source, split)
    got = []
    for shard in rec.shards:
        r = read_shard_file(
            m.split_dir(source, split) / shard.file, seq_len=m.seq_len, dtype=m.dtype
        )
        got += [(r.block(i).input_ids.copy(), r.block(i).starts.copy()) for i in range(len(r))]
    assert len(got) == rec.blocks
    return got


def documents(out: Path, source: str, split: str = "train") -> list[str]:
    """Decode a split's token stream back into documents (split at EOS)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(out / "tokenizer" / "tokenizer.json"))
    ids = np.concatenate([b for b, _ in blocks(out, source, split)] or [np.empty(0, np.uint16)])
    m = Manifest.load(out)
    ids = ids[: ids.size - m.split(source, split).padding_tokens]
    eos = m.tokenizer.eos_id
    cuts = np.flatnonzero(ids == eos)
    pieces = np.split(ids, cuts + 1)[: len(cuts)]
    return [tok.decode(p[:-1].tolist()) for p in pieces]


def small_recipe(tmp_path: Path, **top) -> dict:
    """Three real sources copied from the demo data, with a small seq_len."""
    return demo_recipe(tmp_path, name="small", seed=7, shard_size="64KiB", **top)


def one_source(source: dict, seq_len: int = 4, **top) -> dict:
    """A recipe with one source ``s`` and the repo's tokenizer, written to ``out``."""
    return {
        "seq_len": seq_len,
        "tokenizer": {"path": str(TOKENIZER)},
        "sources": {"s": {"weight": 1, **source}},
        "output": "out",
        **top,
    }


def test_demo_recipe_builds_and_stats(cli, tmp_path):
    out = tmp_path / "demo"
    result = cli("build", REPO / "recipes" / "demo.yaml", "--output", out)
    assert result.exit_code == 0, result.output
    m = Manifest.load(out)
    assert set(m.source_names) == {"books", "zh", "web"}
    for name in m.source_names:
        for split in ("train", "val"):
            rec = m.split(name, split)
            assert rec.documents > 0 and rec.blocks > 0
            assert rec.tokens == rec.blocks * 256 + rec.dropped_tokens
            for shard in rec.shards:
                assert (m.split_dir(name, split) / shard.file).exists()
    assert (out / "tokenizer" / "tokenizer.json").exists()
    result = cli("stats", out)
    assert result.exit_code == 0, result.output
    assert "books" in result.output and "zh" in result.output
    summary = json.loads(cli("stats", out, "--json").output)
    assert summary["seq_len"] == 256
    assert summary["sources"]["web"]["blocks"] == m.split("web").blocks


def test_manifest_records_inputs_tokenizer_and_counts(cli, write_recipe, tmp_path):
    path = write_recipe(small_recipe(tmp_path))
    assert cli("build", path, "-w", "1").exit_code == 0
    m = Manifest.load(tmp_path / "out")
    d = m.to_dict()
    assert d["format"] == 1 and d["mixer_version"] and d["seq_len"] == 64
    assert d["tokenizer"]["kind"] == "path" and d["tokenizer"]["vocab_size"] == 8192
    assert d["tokenizer"]["eos_id"] == 0 and d["tokenizer"]["dtype"] == "uint16"
    files = d["sources"]["web"]["inputs"]["files"]
    assert [Path(f["path"]).name for f in files] == sorted(
        p.name for p in (tmp_path / "web").iterdir()
    )
    assert all(len(f["sha256"]) == 64 and f["bytes"] > 0 for f in files)
    for name in ("books", "web", "zh"):
        for split in ("train", "val"):
            rec = d["sources"][name][split]
            got = blocks(tmp_path / "out", name, split)
            ids = np.stack([b for b, _ in got])
            assert ids.max() < 8192
            assert rec["tokens"] == 64 * rec["blocks"] + rec["dropped_tokens"]
            assert rec["padding_tokens"] == 0 and rec["dropped_tokens"] < 64
            assert sum(s["samples"] for s in rec["shards"]) == rec["blocks"]
    assert len(d["sources"]["books"]["train"]["shards"]) > 1  # 64KiB shards: several


def test_documents_round_trip_and_starts_mark_them(cli, write_recipe, tmp_path):
    recipe = small_recipe(tmp_path, remainder="pad", validation={"fraction": 0.0})
    assert cli("build", write_recipe(recipe), "-w", "1").exit_code == 0
    out = tmp_path / "out"
    got = documents(out, "web")
    expected = []
    for f in sorted((tmp_path / "web").iterdir()):
        from mixer.builder.readers import read_unit
        from mixer.builder.units import plan_units
        from mixer.recipe import parse_recipe

        spec = parse_recipe(
            {
                "seq_len": 2,
                "tokenizer": {"path": str(TOKENIZER)},
                "sources": {"w": {"files": str(f), "weight": 1}},
            },
            base_dir=tmp_path,
        ).sources[0]
        expected += [t for u in plan_units(spec) for _, t, r in read_unit(u, spec) if r is None]
    assert got == expected
    # Every document start follows an EOS (or begins the stream); nothing else starts.
    stream = np.concatenate([b for b, _ in blocks(out, "web")])
    starts = np.concatenate(
        [s.astype(np.int64) + 64 * i for i, (_, s) in enumerate(blocks(out, "web"))]
    )
    eos_after = np.flatnonzero(stream == 0) + 1
    rec = Manifest.load(out).split("web")
    real_end = stream.size - rec.padding_tokens
    assert starts.tolist() == [0] + eos_after[eos_after < real_end].tolist()
    assert (stream[real_end:] == 0).all()  # padded with the EOS id


def test_bos_and_eos_policy(cli, write_recipe, tmp_path):
    recipe = small_recipe(tmp_path, validation={"fraction": 0.0})
    recipe["tokenizer"] = {
        "path": str(TOKENIZER),
        "bos": True,
        "bos_token": "<|endoftext|>",
        "eos": False,
    }
    recipe["sources"] = {"web": recipe["sources"]["web"]}
    assert cli("build", write_recipe(recipe), "-w", "1").exit_code == 0
    for ids, starts in blocks(tmp_path / "out", "web"):
        assert (ids[starts] == 0).all()  # each document begins with BOS


@pytest.mark.parametrize("packing", ["concat", "bestfit"])
def test_byte_identical_for_any_number_of_workers(cli, write_recipe, tmp_path, packing):
    recipe = small_recipe(tmp_path, validation={"docs": 7}, packing=packing)
    if packing == "bestfit":
        recipe["packing_window"] = 7  # several windows, across units
    outs = []
    for w in (1, 2, 3):
        out = tmp_path / f"out{w}"
        result = cli("build", write_recipe(recipe), "--workers", w, "--output", out)
        assert result.exit_code == 0, result.output
        outs.append(out)

    def files(out):
        return {
            p.relative_to(out): p.read_bytes()
            for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != "manifest.json"
        }

    assert files(outs[0]) == files(outs[1]) == files(outs[2])
    sources = [Manifest.load(o).to_dict()["sources"] for o in outs]
    assert sources[0] == sources[1] == sources[2]


def test_validation_split_is_stable_under_reordering(cli, write_recipe, tmp_path):
    """The held-out documents depend on their text only: not on file order or splitting."""
    lines = [json.dumps({"text": f"document {i}: " + "word " * (i % 13)}) for i in range(400)]
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "all.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "b").mkdir()
    rng = np.random.default_rng(0)
    shuffled = [lines[i] for i in rng.permutation(len(lines))]
    for k in range(3):
        (tmp_path / "b" / f"part{k}.jsonl").write_text("\n".join(shuffled[k::3]) + "\n")
    vals = {}
    for variant, val in (
        ("a", {"docs": 40}),
        ("b", {"docs": 40}),
        ("a", {"fraction": 0.1}),
        ("b", {"fraction": 0.1}),
    ):
        recipe = one_source(
            {"files": f"{variant}/*.jsonl"},
            seq_len=8,
            remainder="pad",
            validation=val,
            output=f"out-{variant}",
        )
        assert cli("build", write_recipe(recipe), "-w", "1").exit_code == 0
        out = tmp_path / f"out-{variant}"
        vals[variant, str(val)] = (sorted(documents(out, "s", "val")), sorted(documents(out, "s")))
    by_docs_a, by_docs_b = vals["a", "{'docs': 40}"], vals["b", "{'docs': 40}"]
    assert by_docs_a == by_docs_b and len(by_docs_a[0]) == 40
    by_frac_a, by_frac_b = vals["a", "{'fraction': 0.1}"], vals["b", "{'fraction': 0.1}"]
    assert by_frac_a == by_frac_b and 20 <= len(by_frac_a[0]) <= 60
    assert not set(by_frac_a[0]) & set(by_frac_a[1])  # no document in both splits


def test_remainder_drop_and_pad(cli, write_recipe, tmp_path):
    (tmp_path / "d.jsonl").write_text(
        "".join(json.dumps({"text": f"doc {i} " * 5}) + "\n" for i in range(30))
    )
    counts = {}
    for remainder in ("drop", "pad"):
        recipe = one_source({"files": "d.jsonl"}, seq_len=50, remainder=remainder, output=remainder)
        assert cli("build", write_recipe(recipe), "-w", "1").exit_code == 0
        counts[remainder] = Manifest.load(tmp_path / remainder).split("s")
    drop, pad = counts["drop"], counts["pad"]
    assert drop.tokens == pad.tokens and drop.tokens % 50 != 0
    assert drop.dropped_tokens == drop.tokens % 50 and drop.padding_tokens == 0
    assert pad.blocks == drop.blocks + 1 and pad.dropped_tokens == 0
    assert pad.padding_tokens == 50 - drop.tokens % 50


def test_tiktoken_recipe_builds_uint32_blocks(cli, write_recipe, tmp_path):
    (tmp_path / "zh.jsonl").write_text(
        "".join(
            json.dumps({"text": t}, ensure_ascii=False) + "\n"
            for t in ["天地玄黃，宇宙洪荒。", "Hello 世界"] * 20
        )
    )
    recipe = {
        "seq_len": 16,
        "tokenizer": {"tiktoken": str(qwen_tiktoken_file()), "pattern": "qwen"},
        "sources": {"zh": {"files": "zh.jsonl", "weight": 1}},
        "output": "out",
    }
    result = cli("build", write_recipe(recipe), "-w", "1")
    assert result.exit_code == 0, result.output
    m = Manifest.load(tmp_path / "out")
    assert m.dtype == "uint32" and m.tokenizer.eos_id == 151643
    assert (tmp_path / "out" / "tokenizer" / "qwen.tiktoken").exists()
    assert documents(tmp_path / "out", "zh")[:2] == ["天地玄黃，宇宙洪荒。", "Hello 世界"]


def test_hf_source_builds_like_the_same_files(cli, write_recipe, tmp_path):
    rows = [{"text": f"row {i} " + "text " * (i % 7)} for i in range(200)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet", row_group_size=50)
    outs = {}
    for kind, src in (
        ("files", {"files": "d.parquet"}),
        ("hf", {"hf": {"path": "parquet", "data_files": "d.parquet"}}),
        ("hf-arrow", {"hf": {"path": "parquet", "data_files": "d.parquet", "streaming": False}}),
    ):
        recipe = {
            "seq_len": 16,
            "tokenizer": {"path": str(TOKENIZER)},
            "sources": {"s": {**src, "weight": 1}},
            "output": kind,
        }
        result = cli("build", write_recipe(recipe), "-w", "1")
        assert result.exit_code == 0, result.output
        outs[kind] = [b.tolist() for b, _ in blocks(tmp_path / kind, "s")]
    assert outs["files"] == outs["hf"] == outs["hf-arrow"]


def test_output_is_readable_by_mosaicml_streaming(cli, write_recipe, tmp_path):
    from streaming import StreamingDataset

    assert cli("build", write_recipe(small_recipe(tmp_path)), "-w", "1").exit_code == 0
    ours = blocks(tmp_path / "out", "zh")
    ds = StreamingDataset(
        local=str(tmp_path / "out" / "sources" / "zh" / "train"), shuffle=False, batch_size=1
    )
    assert len(ds) == len(ours)
    for i in (0, len(ds) // 2, len(ds) - 1):
        assert (ds[i]["input_ids"] == ours[i][0]).all()
        assert (np.frombuffer(ds[i]["starts"], np.uint32) == ours[i][1]).all()


@pytest.fixture
def bad_inputs(tmp_path) -> Path:
    lines = [
        '{"text": "good one"}',
        '{"text": "broken',
        '{"title": "x"}',
        '{"text": ""}',
        '{"text": "bad \\udc80 surrogate"}',
        '{"text": "good two"}',
    ]
    (tmp_path / "bad.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_bad_documents_are_counted_and_reported(cli, write_recipe, bad_inputs):
    recipe = one_source({"files": "bad.jsonl"})
    result = cli("build", write_recipe(recipe), "-w", "1")
    assert result.exit_code == 0, result.output
    assert "warning: s: skipped" in result.output and "bad.jsonl:2" in result.output
    src = Manifest.load(bad_inputs / "out").to_dict()["sources"]["s"]
    assert src["skipped"] == {
        "malformed_json": 1,
        "missing_field": 1,
        "empty": 1,
        "invalid_unicode": 1,
    }
    assert src["train"]["skipped"] == src["skipped"]
    assert src["train"]["documents"] == 2
    assert [loc.rsplit(":", 1)[1] for _, loc in src["skipped_examples"]] == ["2", "3", "4", "5"]


def test_strict_turns_the_first_bad_document_into_an_error(cli, write_recipe, bad_inputs):
    recipe = one_source({"files": "bad.jsonl"})
    result = cli("build", write_recipe(recipe), "--strict", "-w", "1", "--no-progress")
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and result.output.count("\n") == 1
    assert "bad.jsonl:2: a line or record that is not valid JSON (malformed_json)" in result.output
    assert sorted(p.name for p in bad_inputs.iterdir()) == ["bad.jsonl", "recipe.yaml"]


def test_a_source_with_no_usable_document_is_an_error(cli, write_recipe, tmp_path):
    (tmp_path / "d.jsonl").write_text('{"body": "x"}\n' * 3)
    recipe = one_source({"files": "d.jsonl"})
    result = cli("build", write_recipe(recipe), "-w", "1")
    assert result.exit_code == 2
    assert "sources.s: no document kept (missing_field 3: missing_field at " in result.output
    assert "d.jsonl:3); check the files and text_field ('text')" in result.output
    assert not (tmp_path / "out").exists()


def test_rebuild_replaces_the_output_and_refuses_foreign_folders(cli, write_recipe, tmp_path):
    (tmp_path / "d.jsonl").write_text('{"text": "one two three four five"}\n' * 10)
    recipe = one_source({"files": "d.jsonl"})
    assert cli("build", write_recipe(recipe), "-w", "1").exit_code == 0
    first = Manifest.load(tmp_path / "out").split("s").blocks
    recipe["seq_len"] = 8
    assert cli("build", write_recipe(recipe), "-w", "1").exit_code == 0
    assert Manifest.load(tmp_path / "out").seq_len == 8
    assert Manifest.load(tmp_path / "out").split("s").blocks < first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.jsonl", "out", "recipe.yaml"]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    result = cli("build", write_recipe(recipe), "-w", "1", "--output", tmp_path / "mine")
    assert result.exit_code == 2 and "is not a mixer output" in result.output
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_stats_on_a_folder_that_is_not_a_build(cli, tmp_path):
    result = cli("stats", tmp_path)
    assert result.exit_code == 2 and "not a complete mixer build" in result.output


def test_merge_chunking_does_not_change_the_output(cli, write_recipe, tmp_path, monkeypatch):
    import mixer.builder.merge

    recipe = small_recipe(tmp_path, validation={"docs": 5})
    assert cli("build", write_recipe(recipe), "-w", "1", "-o", tmp_path / "a").exit_code == 0
    monkeypatch.setattr(mixer.builder.merge, "CHUNK_DOCS", 7)
    monkeypatch.setattr(mixer.builder.merge, "CHUNK_TOKENS", 100)  # smaller than many documents
    assert cli("build", write_recipe(recipe), "-w", "1", "-o", tmp_path / "b").exit_code == 0
    for name in ("books", "web", "zh"):
        for split in ("train", "val"):
            a = [x.tolist() for x, _ in blocks(tmp_path / "a", name, split)]
            assert a == [x.tolist() for x, _ in blocks(tmp_path / "b", name, split)]


def test_progress_bars_on_request(cli, write_recipe, tmp_path):
    recipe = small_recipe(tmp_path)
    result = cli("build", write_recipe(recipe), "-w", "1", "--progress")
    assert result.exit_code == 0, result.output
    for word in ("books", "web", "zh", "MB/s", "docs/s", "tokens"):
        assert word in result.output
    quiet = cli("build", write_recipe(recipe), "-w", "1")  # not a terminal: no bars
    assert "MB/s" not in quiet.output


@pytest.mark.parametrize("tokenizer", ["demo", "qwen"])
def test_tiktoken_and_tokenizers_encoders_write_the_same_bytes(
    cli, write_recipe, tmp_path, tokenizer
):
    recipe = small_recipe(tmp_path, validation={"docs": 4})
    if tokenizer == "qwen":
        recipe["tokenizer"] = {"tiktoken": str(qwen_tiktoken_file()), "pattern": "qwen"}
    outs = {}
    for encoder in ("tiktoken", "tokenizers"):
        out = tmp_path / encoder
        result = cli("build", write_recipe(recipe), "-w", "1", "-o", out, "--encoder", encoder)
        assert result.exit_code == 0, result.output
        assert f"encoding with {encoder}" in result.output
        outs[encoder] = {p.relative_to(out): p.read_bytes() for p in out.rglob("*.zstd")}
    assert outs["tiktoken"] == outs["tokenizers"] and outs["tiktoken"]


def test_a_failed_encoder_check_redoes_the_units_with_tokenizers(
    cli, write_recipe, tmp_path, monkeypatch
):
    """The check runs while the workers already encode with the first candidate: when every
    faster encoder fails it, those units are encoded again with `tokenizers`, each reported
    once, and the bytes are the reference's."""
    import mixer.builder.encoders as encoders

    recipe = write_recipe(small_recipe(tmp_path, validation={"docs": 4}))
    ref = cli("build", recipe, "-w", "2", "-o", tmp_path / "ref", "--encoder", "tokenizers")
    assert ref.exit_code == 0, ref.output
    monkeypatch.setattr(encoders, "_first_difference", lambda *a: 0)  # every check fails
    result = cli("build", recipe, "-w", "2", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "WARNING: tiktoken and tokenizers give different ids" in result.output
    assert "encoding with tokenizers" in result.output
    events = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    units = [(e["source"], e["unit"]) for e in events if e["event"] == "unit"]
    sources = Manifest.load(tmp_path / "ref").sources.values()
    assert len(units) == len(set(units)) == sum(src.inputs.units for src in sources)
    for name in ("books", "web", "zh"):
        for split in ("train", "val"):
            got = [(ids.tolist(), s.tolist()) for ids, s in blocks(tmp_path / "out", name, split)]
            assert got == [
                (ids.tolist(), s.tolist()) for ids, s in blocks(tmp_path / "ref", name, split)
            ]
    result = cli("build", recipe, "-w", "2", "-o", tmp_path / "b", "--encoder", "tiktoken")
    assert result.exit_code == 2 and "--encoder tiktoken: cannot be used" in result.output


def test_tiktoken_is_refused_loudly_where_it_does_not_apply(cli, write_recipe, tmp_path):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    tok = Tokenizer(models.BPE(vocab={"a": 0, "b": 1, "<|endoftext|>": 2}, merges=[]))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "tok.json"))
    (tmp_path / "d.jsonl").write_text('{"text": "a b a"}\n' * 8)
    recipe = one_source({"files": "d.jsonl"}, tokenizer={"path": str(tmp_path / "tok.json")})
    result = cli("build", write_recipe(recipe), "-w", "1")
    assert result.exit_code == 0
    assert "tiktoken: not a byte-level BPE without normalizer" in result.output
    result = cli("build", write_recipe(recipe), "-w", "1", "--encoder", "tiktoken", "-o", "b")
    assert result.exit_code == 2 and "--encoder tiktoken: cannot be used" in result.output


def test_a_json_line_per_unit_when_not_on_a_terminal(cli, write_recipe, tmp_path):
    recipe = write_recipe(small_recipe(tmp_path))
    result = cli("build", recipe, "-w", "1")
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    units = [e for e in events if e["event"] == "unit"]
    assert len(units) == 5 + 4 + 5  # books: 5 files; web: 4 files; zh: 4 + 1 row groups
    for e in units:
        assert set(e) == {
            "event",
            "source",
            "unit",
            "units",
            "documents",
            "tokens",
            "bytes",
            "elapsed_s",
        }
        assert e["documents"] > 0 and e["tokens"] > 0 and e["bytes"] > 0
    assert events[0]["event"] == "note" and "encoding with" in events[0]["message"]
    quiet = cli("build", recipe, "-w", "1", "--no-progress", "-o", tmp_path / "quiet")
    assert not [line for line in quiet.output.splitlines() if line.startswith("{")]


def test_packing_per_source_leaves_a_concat_source_as_it_was(tmp_path):
    """`packing: bestfit` on one source: it gets a padding file and a new key; the other
    source keeps the very bytes and key of an all-concat build (nothing re-tokenized)."""
    from tests.helpers import build_demo

    weights = {"web": 0.5, "zh": 0.5}
    plain = build_demo(tmp_path / "a", weights)
    mixed = build_demo(tmp_path / "b", weights, sources_packing={"web": "bestfit"})
    m, p = Manifest.load(mixed), Manifest.load(plain)
    assert m.split("web").padding is not None and m.split("zh").padding is None
    assert m.sources["zh"].key == p.sources["zh"].key
    assert m.sources["web"].key != p.sources["web"].key
    for split in ("train", "val"):
        assert m.split("zh", split).shards == p.split("zh", split).shards
    assert m.ledger["web"]["train"].documents_cut <= p.ledger["web"]["train"].documents_cut
