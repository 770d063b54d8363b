"""Recipe loading: resolution of paths and defaults, and one clear error per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from mixer.errors import RecipeError
from mixer.recipe import load_recipe


@pytest.fixture
def base(tmp_path) -> dict:
    (tmp_path / "tok.json").write_text("{}")
    (tmp_path / "data").mkdir()
    for name in ("b.jsonl", "a.jsonl", "c.txt"):
        (tmp_path / "data" / name).write_text('{"text": "x"}\n')
    return {
        "name": "t",
        "seq_len": 16,
        "tokenizer": {"path": "tok.json"},
        "sources": {"web": {"files": "data/*.jsonl", "weight": 1.0}},
        "output": "out",
    }


def _load(write_recipe, data):
    return load_recipe(write_recipe(data))


def test_defaults_and_relative_paths(write_recipe, base, tmp_path):
    r = _load(write_recipe, base)
    assert r.seq_len == 16 and r.seed == 0 and r.remainder == "drop" and r.packing == "concat"
    assert r.tokenizer.kind == "path" and r.tokenizer.location == str(tmp_path / "tok.json")
    assert r.tokenizer.eos and not r.tokenizer.bos
    src = r.sources[0]
    # A glob expands sorted by path; relative paths resolve against the recipe's folder.
    assert src.files == (str(tmp_path / "data/a.jsonl"), str(tmp_path / "data/b.jsonl"))
    assert src.text_field == "text" and src.encoding == "utf-8" and src.txt_mode == "file"
    assert r.output == str(tmp_path / "out")
    assert not src.validation.active


def test_lists_keep_their_order_and_cli_output_overrides(write_recipe, base, tmp_path):
    base["sources"]["web"]["files"] = ["data/b.jsonl", "data/a.jsonl"]
    r = load_recipe(write_recipe(base), output="elsewhere")
    assert [Path(f).name for f in r.sources[0].files] == ["b.jsonl", "a.jsonl"]
    assert r.output == "elsewhere"


def test_validation_default_and_per_source_override(write_recipe, base):
    base["validation"] = {"fraction": 0.1}
    base["sources"]["other"] = {"files": "data/c.txt", "weight": 2, "validation": {"docs": 5}}
    r = _load(write_recipe, base)
    assert r.source("web").validation.fraction == 0.1
    assert r.source("other").validation.docs == 5 and r.source("other").validation.fraction is None


def test_shard_size_units(write_recipe, base):
    base["shard_size"] = "2MiB"
    assert _load(write_recipe, base).shard_size == 2 << 20
    base["shard_size"] = "64MB"
    assert _load(write_recipe, base).shard_size == 64_000_000


def _set(d: dict, dotted: str, value):
    keys = dotted.split(".")
    for k in keys[:-1]:
        d = d[k]
    if value is _DELETE:
        del d[keys[-1]]
    else:
        d[keys[-1]] = value


_DELETE = object()

ERRORS = [
    (
        "wieght",
        "sources.web.wieght",
        1,
        r"sources\.web\.wieght: unknown key \(did you mean 'weight'\?\)",
    ),
    ("top-level typo", "seq_lenn", 5, r"seq_lenn: unknown key \(did you mean 'seq_len'\?\)"),
    ("no tokenizer", "tokenizer", _DELETE, r"tokenizer: missing required key"),
    (
        "two tokenizers",
        "tokenizer.hf",
        "gpt2",
        r"tokenizer: exactly one of path, hf or tiktoken .*got path, hf",
    ),
    (
        "missing tokenizer file",
        "tokenizer.path",
        "nope.json",
        r"tokenizer\.path: no such file: .*nope\.json",
    ),
    (
        "tiktoken without pattern",
        "tokenizer",
        {"tiktoken": "tok.json"},
        r"tokenizer: tiktoken needs `pattern:`",
    ),
    (
        "glob without match",
        "sources.web.files",
        "data/*.parquet",
        r"sources\.web\.files: no file matches 'data/\*\.parquet'",
    ),
    (
        "missing file",
        "sources.web.files",
        ["data/a.jsonl", "data/zz.jsonl"],
        r"no file matches 'data/zz\.jsonl'",
    ),
    ("weight zero", "sources.web.weight", 0, r"sources\.web\.weight: must be > 0, got 0"),
    (
        "weight negative",
        "sources.web.weight",
        -1.5,
        r"sources\.web\.weight: must be > 0, got -1\.5",
    ),
    (
        "weight missing",
        "sources.web.weight",
        _DELETE,
        r"sources\.web\.weight: missing required key",
    ),
    (
        "weight string",
        "sources.web.weight",
        "high",
        r"sources\.web\.weight: expected a number, got a string 'high'",
    ),
    ("seq_len 1", "seq_len", 1, r"seq_len: must be >= 2, got 1"),
    ("seq_len bool", "seq_len", True, r"seq_len: expected an integer, got a boolean True"),
    ("seq_len missing", "seq_len", _DELETE, r"seq_len: missing required key"),
    ("no sources", "sources", {}, r"sources: at least one source is needed"),
    (
        "files and hf",
        "sources.web.hf",
        {"path": "json"},
        r"sources\.web: give exactly one of files, hf or from",
    ),
    ("unsupported type", "sources.web.files", "data/c.txt", None),
    (
        "bad source name",
        "sources",
        {"../x": {"files": "data/a.jsonl", "weight": 1}},
        r"sources\.\.\./x: a source name must be",
    ),
    (
        "unknown encoding",
        "sources.web.encoding",
        "klingon",
        r"sources\.web\.encoding: unknown encoding 'klingon'",
    ),
    (
        "utf-16",
        "sources.web.encoding",
        "utf-16",
        r"sources\.web\.encoding: utf-16 is not ASCII-compatible",
    ),
    (
        "txt_mode",
        "sources.web.txt_mode",
        "sentence",
        r"sources\.web\.txt_mode: must be one of file, line, paragraph, got 'sentence'",
    ),
    ("remainder", "remainder", "keep", r"remainder: must be one of drop, pad, got 'keep'"),
    ("packing", "packing", "bfd", r"packing: must be one of concat, bestfit, got 'bfd'"),
    ("packing_window", "packing_window", 0, r"packing_window: must be >= 1, got 0"),
    ("weights_in", "mixture", {"weights_in": "bytes"}, r"mixture\.weights_in: must be one of"),
    (
        "weights_in phases",
        "mixture",
        {"weights_in": "tokens", "phases": [{"weights": {"web": 1}}]},
        r"mixture\.weights_in: tokens is not supported with phases yet; give the weights",
    ),
    (
        "source packing",
        "sources.web.packing",
        "greedy",
        r"sources\.web\.packing: must be one of concat, bestfit, got 'greedy'",
    ),
    (
        "validation both",
        "validation",
        {"docs": 3, "fraction": 0.1},
        r"validation: give exactly one of docs or fraction",
    ),
    (
        "validation fraction",
        "validation",
        {"fraction": 1.5},
        r"validation\.fraction: must be in \[0, 1\), got 1\.5",
    ),
    (
        "mixture both",
        "mixture",
        {"samples": 10, "tokens": 100},
        r"mixture: give samples or tokens, not both",
    ),
    ("max_epochs", "mixture", {"max_epochs": 0}, r"mixture\.max_epochs: must be > 0, got 0"),
    ("seed negative", "seed", -1, r"seed: must be >= 0, got -1"),
    ("sources not mapping", "sources", ["web"], r"sources: expected a mapping, got a list"),
    (
        "shard_size",
        "shard_size",
        "huge",
        r"shard_size: expected a size such as 64MiB, 500MB or 65536, got 'huge'",
    ),
]


@pytest.mark.parametrize("case,key,value,message", ERRORS, ids=[e[0] for e in ERRORS])
def test_recipe_errors_name_the_key(write_recipe, base, case, key, value, message):
    if case == "unsupported type":
        Path(write_recipe({}, "x.yaml").parent / "data" / "d.csv").write_text("a,b\n")
        value, message = "data/*.csv", r"sources\.web\.files: .*d\.csv: unsupported file type"
    _set(base, key, value)
    path = write_recipe(base)
    with pytest.raises(RecipeError, match=message) as info:
        load_recipe(path)
    assert str(info.value).startswith(str(path) + ": ")
    assert "\n" not in str(info.value)


def test_yaml_errors_give_the_line(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("name: x\nseq_len: [1,\n")
    with pytest.raises(RecipeError, match=r"r\.yaml:\d+: invalid YAML"):
        load_recipe(p)
    p.write_text("name: x\nname: y\n")
    with pytest.raises(RecipeError, match=r"r\.yaml:2: invalid YAML: duplicate key 'name'"):
        load_recipe(p)


def test_yaml_is_data_never_code(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(RecipeError, match="invalid YAML"):
        load_recipe(p)


def test_missing_recipe_file(tmp_path):
    with pytest.raises(RecipeError, match=r"no such recipe file"):
        load_recipe(tmp_path / "absent.yaml")


def test_cli_recipe_error_is_one_line_exit_2_and_writes_nothing(cli, write_recipe, base, tmp_path):
    base["sources"]["web"]["weight"] = 0
    path = write_recipe(base)
    result = cli("build", path)
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and result.output.startswith("error: ")
    assert "sources.web.weight" in result.output
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    result = cli("validate", path)
    assert result.exit_code == 2 and "sources.web.weight: must be > 0" in result.output
