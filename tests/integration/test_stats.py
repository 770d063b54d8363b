"""mixer stats / inspect / --plot on a real build: numbers against the manifest and iteration."""

from __future__ import annotations

import itertools
import json
import shutil

import numpy as np
import pytest

from mixer import StreamingMixture
from mixer.artifacts.manifest import Manifest
from tests.helpers import DATA, TOKENIZER


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    from click.testing import CliRunner

    from mixer.cli import main

    root = tmp_path_factory.mktemp("stats")
    for name in ("books", "web", "zh"):
        shutil.copytree(DATA / name, root / name)
    import yaml

    recipe = {
        "seed": 3,
        "seq_len": 64,
        "remainder": "pad",
        "tokenizer": {"path": str(TOKENIZER)},
        "sources": {
            "books": {"files": "books/*.txt", "txt_mode": "paragraph", "weight": 0.5},
            "web": {"files": "web/*.jsonl*", "weight": 0.1, "validation": {}},
            "zh": {"files": "zh/*.parquet", "weight": 0.4},
        },
        "validation": {"docs": 3},
        "mixture": {"samples": 8000},
        "output": "out",
    }
    (root / "r.yaml").write_text(yaml.safe_dump(recipe))
    result = CliRunner().invoke(main, ["build", str(root / "r.yaml"), "-w", "1"])
    assert result.exit_code == 0, result.output
    return root / "out"


def stats_json(cli, *args) -> dict:
    result = cli("stats", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_json_matches_the_manifest_and_the_plan(cli, out):
    s = stats_json(cli, out)
    m = Manifest.load(out)
    assert s["seq_len"] == 64 and s["total_samples"] == 8000 and s["seed"] == 3
    assert sum(src["samples"] for src in s["sources"].values()) == 8000
    for name, src in s["sources"].items():
        train, val = m.split(name), m.split(name, "val")
        for key in ("documents", "tokens", "blocks", "dropped_tokens", "padding_tokens"):
            assert src[key] == getattr(train, key) and src["val"][key] == getattr(val, key)
        assert src["weight"] == m.sources[name].weight
        assert src["epochs"] == pytest.approx(src["samples"] / src["blocks"])
        assert src["passes"] == -(-src["samples"] // src["blocks"])
    assert s["sources"]["books"]["samples_share"] == pytest.approx(0.5)
    # without phases: one phase spanning the plan, with the sources' weights
    (phase,) = s["phases"]
    assert (phase["index"], phase["name"], phase["until"]) == (0, None, None)
    assert (phase["start"], phase["end"], phase["samples"]) == (0, 8000, 8000)
    for name, src in s["sources"].items():
        assert phase["sources"][name] == {
            "weight": src["weight"],
            "samples": src["samples"],
            "share": src["samples_share"],
            "epochs": src["epochs"],
        }


def test_the_ledger_counts_cut_documents_and_scored_labels(cli, out):
    """Concat: a document is cut when its tokens cross a block boundary (from the provenance
    table's token counts, in packing order); loss tokens are L - 1 per block less padding."""
    from mixer.artifacts.origins import OriginsTable

    s, m = stats_json(cli, out), Manifest.load(out)
    for name, src in s["sources"].items():
        table = OriginsTable(out / "sources" / name / "train" / "origins.bin")
        chunks = range(len(table.arrays["c_offset"]))
        tokens = np.concatenate([table._chunk(c)["tokens"] for c in chunks]).astype(np.int64)
        ends = np.cumsum(tokens)
        assert src["documents_cut"] == int(((ends - tokens) // 64 != (ends - 1) // 64).sum())
        assert src["loss_tokens"] == m.split(name).blocks * 63 - m.split(name).padding_tokens
        assert src["documents_cut"] > 0


def test_a_build_older_than_the_ledger_shows_it_unknown(cli, out, tmp_path):
    """The ledger is outside the fingerprint: a manifest without it still loads."""
    old = tmp_path / "old"
    shutil.copytree(out, old)
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["ledger"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    s = stats_json(cli, old)
    assert all(
        "documents_cut" not in src and "loss_tokens" not in src for src in s["sources"].values()
    )
    result = cli("stats", old)
    assert result.exit_code == 0, result.output
    assert "│        ? │" in result.output


def test_consumed_equals_iteration(cli, out, tmp_path):
    samples = list(itertools.islice(StreamingMixture(out, cache_dir=tmp_path), 1000))
    by_sample = stats_json(cli, out, "--at-sample", 1000)
    by_step = stats_json(cli, out, "--at-step", 25, "--batch-size", 10, "--world-size", 4)
    assert by_sample["consumed"] == by_step["consumed"]
    assert by_sample["at_phase"] == 0
    raw = StreamingMixture(out, cache_dir=tmp_path)
    last = {}
    for name in ("books", "web", "zh"):
        store = raw._store(name)
        last[name] = store.tokens([len(store) - 1])[0].tolist()
    pad = {n: Manifest.load(out).split(n).padding_tokens for n in last}
    for name, got in by_sample["consumed"].items():
        mine = [x for x in samples if x["source"] == name]
        padded = sum(x["input_ids"].tolist() == last[name] for x in mine)
        assert got == {"samples": len(mine), "tokens": 64 * len(mine) - pad[name] * padded}


def test_table_and_warnings(cli, out):
    result = cli("stats", out)
    assert result.exit_code == 0, result.output
    text = result.output
    for word in ("books", "web", "zh", "train", "val", "8,000", "epochs", "samples %", "total"):
        assert word in text
    assert "warning: web has no validation split" in text
    assert "phases over" not in text and "phases[" not in text  # no phase block without phases
    assert "warning: zh is repeated" in text  # 3,200 samples from ~140 blocks of zh
    s = stats_json(cli, out)
    assert any(w.startswith("zh has too little data for its weight") for w in s["warnings"])
    assert not any(w.startswith("books is repeated") for w in s["warnings"])


def test_stats_errors(cli, out, tmp_path):
    result = cli("stats", out, "--at-step", 5)
    assert result.exit_code == 2 and "--at-step needs --batch-size" in result.output
    result = cli("stats", out, "--at-sample", 8001)
    assert result.exit_code == 2 and "beyond the plan's 8,000 samples" in result.output
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "sources").mkdir()
    result = cli("stats", tmp_path / "partial")
    assert (
        result.exit_code == 2 and "not a complete mixer build (no manifest.json)" in result.output
    )


def test_inspect_decodes_a_block_with_document_boundaries(cli, out):
    books = (DATA / "books" / "01-genesis.txt").read_text().split("\n\n")
    result = cli("inspect", out, "--source", "books", "--index", 0)
    assert result.exit_code == 0, result.output
    assert "books/train block 0 of" in result.output
    assert "document starts · tokens 0-" in result.output
    # where it comes from, then the record's text: the start of a held-in chapter
    origin = result.output.split("\n")[2]
    assert "01-genesis.txt paragraph 1 · chars 0-" in origin, result.output
    first_line = result.output.split("\n")[3]
    assert any(first_line and chapter.startswith(first_line.strip()) for chapter in books)


def test_inspect_a_global_sample(cli, out):
    ds = StreamingMixture(out, cache_dir=out.parent / "cache")
    x = next(x for i, x in enumerate(ds) if i == 777)
    result = cli("inspect", out, "--sample", 777)
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"sample 777 of 8,000: {x['source']}, its sample")
    result = cli("inspect", out, "--sample", 8000)
    assert result.exit_code == 2 and "outside the plan" in result.output
    result = cli("inspect", out, "--source", "zh", "--split", "val", "--index", 99)
    assert result.exit_code == 2 and "--index 99 is out of range" in result.output
    result = cli("inspect", out)
    assert result.exit_code == 2 and "give --source NAME" in result.output


def test_plot_is_a_png_with_two_panels(cli, out, tmp_path):
    from mixer.artifacts.planfile import load_plan
    from mixer.report.plot import plot

    path = tmp_path / "mix.png"
    result = cli("stats", out, "--plot", path)
    assert result.exit_code == 0, result.output
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    m = Manifest.load(out)
    fig = plot(m, load_plan(m), tmp_path / "again.png")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == [
        "Cumulative share of samples per source (dotted: weight)",
        "Document length (tokens, train split)",
    ]
    share_ax = fig.axes[0]
    assert [line.get_label().split(" ")[0] for line in share_ax.get_lines()[::2]] == [
        "books",
        "web",
        "zh",
    ]
    final = [line.get_ydata()[-1] for line in share_ax.get_lines()[::2]]
    assert np.allclose(final, [0.5, 0.1, 0.4])
