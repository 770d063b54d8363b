"""`mixer inspect --sample/--step` lists where every piece of the served blocks comes from."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil

import pytest

from mixer.artifacts.manifest import Manifest
from mixer.artifacts.planfile import load_plan, save_plan, train_plan
from mixer.report.provenance import Provenance, pieces, sample_block, step_samples
from tests.helpers import TOKENIZER, build_demo

pytestmark = pytest.mark.integration
KEYS = {"sample", "block", "source", "file", "record", "chars", "tokens", "cut"}


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return build_demo(tmp_path_factory.mktemp("prov"), mixture={"samples": 400})


def test_sample_json_names_records_whose_text_is_in_the_input(cli, out):
    result = cli("inspect", out, "--sample", 7, "--json")
    assert result.exit_code == 0, result.output
    got = json.loads(result.output)
    assert sum(p["tokens"] for p in got) == 64  # the pieces cover the block
    for p in got:
        assert set(p) >= KEYS and p["sample"] == 7 and p["note"] is None
        a, b = p["chars"]
        assert p["text"] and p["text"] == _record_text(p)[a:b]
    assert got == pieces(out, sample=7)  # the same from Python


def _record_text(p: dict) -> str:
    """The record, read independently of mixer: a line, paragraph or row of the file."""
    if p["kind"] == "row":
        import pyarrow.parquet as pq

        return pq.read_table(p["file"]).column("text")[p["record"]].as_py()
    if p["file"].endswith((".gz", ".zst")):
        import gzip

        import zstandard

        raw = open(p["file"], "rb").read()  # noqa: SIM115
        data = gzip.decompress(raw) if p["file"].endswith(".gz") else _unzstd(zstandard, raw)
        lines = data.decode().split("\n")
    else:
        lines = open(p["file"], encoding="utf-8").read().split("\n")  # noqa: SIM115
    if p["kind"] == "paragraph":
        para = []
        for line in lines[p["record"] - 1 :]:
            if not line.strip():
                break
            para.append(line)
        return "\n".join(para)
    return json.loads(lines[p["record"] - 1])["text"]


def _unzstd(zstandard, raw: bytes) -> bytes:
    return zstandard.ZstdDecompressor().stream_reader(raw).read()


def test_step_lists_the_ranks_samples_in_order(cli, out):
    result = cli(
        "inspect", out, "--step", 3, "--rank", 1, "--batch-size", 2, "--world-size", 3,
        "--grad-accum", 2, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    got = json.loads(result.output)
    want = step_samples(3, 1, 2, 3, 2)
    assert want == [38, 39, 44, 45]  # global batches 6 and 7, rank 1's slice of each
    assert [p["sample"] for p in got] == sorted(p["sample"] for p in got)
    assert sorted({p["sample"] for p in got}) == want
    plan = load_plan(Manifest.load(out))
    for p in got:
        assert (p["source"], p["block"]) == sample_block(plan, p["sample"])
    text = cli("inspect", out, "--step", 3, "--rank", 1, "--batch-size", 2, "--world-size", 3)
    assert text.exit_code == 0 and text.output.count("sample ") >= 2, text.output


@pytest.mark.parametrize(
    "args, message",
    [
        (("--sample", 400), "--sample 400 is outside the plan's [0, 400)"),
        (("--step", 1, "--rank", 2, "--batch-size", 4, "--world-size", 2), "--rank 2 is not"),
        (("--step", 1), "--step needs --batch-size"),
        (("--step", 100, "--batch-size", 4), "--step 100 ends at sample 403, beyond the plan"),
        (("--sample", 1, "--step", 1), "give --source NAME"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(cli, out, args, message):
    result = cli("inspect", out, *args)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.lower().startswith("error")]
    assert len(errors) == 1 and message in errors[0], result.output


def test_a_changed_input_is_said_in_one_line_not_shown(cli, out):
    built = Manifest.load(out)
    first = pieces(out, sample=0)[0]
    path = first["file"]
    saved = open(path, "rb").read()  # noqa: SIM115
    try:
        with open(path, "ab") as f:
            f.write(b"\n")
        os.utime(path, ns=(1, 1))
        got = pieces(out, sample=0)[0]
        assert got["chars"] is None and got["text"] is None
        assert got["note"] == (
            f"{path}: the input file changed since the build (other bytes); text not shown"
        )
        result = cli("inspect", out, "--sample", 0)
        assert result.exit_code == 0 and "changed since the build" in result.output
    finally:
        with open(path, "wb") as f:
            f.write(saved)
        rec = next(
            f for s in built.sources.values() for f in s.inputs.files or () if f.path == path
        )
        os.utime(path, ns=(rec.mtime_ns, rec.mtime_ns))
    assert pieces(out, sample=0)[0] == first


def test_a_build_without_provenance_says_so_in_one_line(cli, out, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(out, old)
    m = Manifest.load(old)
    sources = {}
    for name, src in m.sources.items():
        for split in ("train", "val"):
            (old / "sources" / name / split / "origins.bin").unlink()
        sources[name] = dataclasses.replace(
            src,
            train=dataclasses.replace(src.train, origins=None),
            val=dataclasses.replace(src.val, origins=None),
        )
    m = dataclasses.replace(m, sources=sources).sealed()
    m.save()
    save_plan(train_plan(m, m.recipe["mixture"]), old)
    result = cli("inspect", old, "--sample", 3, "--json")
    assert result.exit_code == 2
    assert "this build has no provenance" in result.output and "rebuild it" in result.output
    result = cli("inspect", old, "--sample", 3)  # the decoded block, with that note
    assert result.exit_code == 0 and "note: " in result.output, result.output


def test_every_block_of_every_source_names_its_records(out):
    """Paragraphs of .txt, lines of .jsonl, .jsonl.gz and .jsonl.zst, rows of .parquet: each
    piece's text is the characters ``chars`` of the record, read independently."""
    manifest = Manifest.load(out)
    prov = Provenance(manifest)
    kinds = set()
    for name in manifest.sources:
        for split in ("train", "val"):
            for b in range(manifest.split(name, split).blocks):
                got = prov.block(name, split, b)
                assert sum(p["tokens"] for p in got) == manifest.seq_len
                for p in got:
                    a, z = p["chars"]
                    assert p["text"] == _record_text(p)[a:z], p
                    kinds.add((p["kind"], p["file"].rsplit(".", 1)[-1]))
    assert kinds == {("paragraph", "txt"), ("line", "jsonl"), ("line", "gz"), ("line", "zst"),
                     ("row", "parquet")}  # fmt: skip


@pytest.mark.parametrize("streaming", [True, False])
def test_a_hugging_face_source_names_its_examples(tmp_path, streaming):
    from mixer.builder import build
    from mixer.recipe import parse_recipe

    texts = [[f"part {i} document {j} " + "word " * (j % 5) for j in range(30)] for i in range(3)]
    for i, part in enumerate(texts):
        (tmp_path / f"part{i}.jsonl").write_text(
            "".join(json.dumps({"text": t}) + "\n" for t in part)
        )
    hf = {"path": "json", "data_files": "part*.jsonl", "streaming": streaming}
    recipe = {
        "seq_len": 16,
        "tokenizer": {"path": str(TOKENIZER)},
        "sources": {"s": {"hf": hf, "weight": 1}},
    }
    out = tmp_path / "out"
    build(parse_recipe(recipe, base_dir=tmp_path, output=str(out)), workers=1, show_progress=False)
    manifest = Manifest.load(out)
    prov = Provenance(manifest)
    flat = [t for part in texts for t in part]
    for b in range(manifest.split("s").blocks):
        for p in prov.block("s", "train", b):
            assert p["kind"] == "example" and p["note"] is None, p
            if streaming:  # shard i is part i: the record is the example's row in it
                shard = int(p["file"].rsplit(" ", 1)[1])
                record = texts[shard][p["record"]]
            else:
                record = flat[p["record"]]
            a, z = p["chars"]
            assert p["text"] == record[a:z]


def test_inspect_shows_a_best_fit_blocks_padding_apart(cli, tmp_path):
    """The padding of a best-fit block is no document's: inspect shows it after the pieces."""
    from mixer.serve.padding import BlockPadding

    out = build_demo(tmp_path, {"zh": 1.0}, seq_len=64, packing="bestfit")
    manifest = Manifest.load(out)
    pads = BlockPadding(manifest, "train", tmp_path / "c").array("zh")
    b = int(pads.argmax())
    result = cli("inspect", out, "--source", "zh", "--index", b)
    assert result.exit_code == 0, result.output
    assert f"padding · tokens {64 - pads[b]}-63 (not trained)" in result.output
