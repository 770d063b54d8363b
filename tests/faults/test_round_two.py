"""Hostile and concurrent use, round two (issue 21): names, reports, neighbours, tracebacks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from mixer.artifacts import checks
from mixer.errors import RecipeError
from mixer.recipe import parse_recipe
from tests.helpers import TOKENIZER


# -- names match whole strings ---------------------------------------------------------------
@pytest.mark.parametrize(
    "check, value",
    [
        (checks.source_name, "web\n"),
        (checks.shard_file, "shard.00000.mds.zstd\n"),
        (checks.hex64, "0" * 64 + "\n"),
    ],
)
def test_a_trailing_newline_is_not_part_of_a_name(check, value):
    with pytest.raises(checks.Refused, match="is not a"):
        check(value, "x")


def test_a_skip_reason_with_a_trailing_newline_is_refused():
    with pytest.raises(checks.Refused, match="is not a skip reason"):
        checks._skipped({"empty\n": 1}, "x")


def test_a_recipe_source_name_with_a_trailing_newline_is_refused(tmp_path):
    data = {"seq_len": 8, "tokenizer": {"path": str(TOKENIZER)}}
    data["sources"] = {"a\n": {"files": "x.txt", "weight": 1}}
    with pytest.raises(RecipeError, match="a source name must be 1-64 letters"):
        parse_recipe(data, base_dir=tmp_path)


# -- inspect escapes control characters -------------------------------------------------------
def build(cli, tmp_path, text: str):
    """Build one JSON-lines document of ``text`` into tmp_path/out; the CLI result."""
    (tmp_path / "d.jsonl").write_text(json.dumps({"text": text}) + "\n")
    recipe = {
        "seq_len": 16,
        "tokenizer": {"path": str(TOKENIZER)},
        "output": "out",
        "validation": {"fraction": 0},
        "sources": {"s": {"weight": 1, "files": "d.jsonl"}},
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    return cli("build", tmp_path / "r.yaml", "-w", "1", "--no-progress")


def built(cli, tmp_path, text: str) -> Path:
    result = build(cli, tmp_path, text)
    assert result.exit_code == 0, result.output
    return tmp_path / "out"


def test_inspect_escapes_control_characters_of_the_text(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("MIXER_CACHE", str(tmp_path / "cache"))
    out = built(cli, tmp_path, "\u202e title \x1b]0;pwned\x07 clear \x1b[2J end " * 3)
    result = cli("inspect", out, "--source", "s", "--index", "0")
    assert result.exit_code == 0, result.output
    assert not any(c in result.output for c in "\x1b\x07\u202e"), repr(result.output)
    assert "\\x1b]0;pwned\\x07" in result.output and "\\u202e" in result.output


def test_printable_keeps_ordinary_text():
    from mixer.report.printable import printable

    text = "line one\n\ttabbed — ünïcödé 中文 [bold]x[/bold]"
    assert printable(text) == text
    assert printable("a\x00b\x9bc\rd") == "a\\x00b\\x9bc\\rd"


# -- tracebacks become one line --------------------------------------------------------------
def test_a_yaml_key_that_is_a_list_is_a_recipe_error(cli, tmp_path):
    (tmp_path / "r.yaml").write_text(
        f"seq_len: 8\ntokenizer: {{path: {TOKENIZER}}}\n? [a, b]\n: 1\n"
    )
    result = cli("build", tmp_path / "r.yaml")
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert "r.yaml:3: invalid YAML: a key must be a name, not a list" in result.output


def test_a_tokenizer_that_panics_in_inspect_is_one_line(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("MIXER_CACHE", str(tmp_path / "cache"))
    out = built(cli, tmp_path, "some text " * 20)

    class PanicException(BaseException):  # pyo3's: a Rust panic, not an Exception
        pass

    class Panics:
        def decode(self, ids, skip_special_tokens=False):
            raise PanicException("byte index 1 is not a char boundary")

    monkeypatch.setattr("mixer.report.inspect.build_tokenizer", lambda m, c: Panics())
    result = cli("inspect", out, "--source", "s", "--index", "0")
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert "s/train block 0: the build's tokenizer cannot decode its ids (it panicked" in (
        result.output
    )


# -- only the folders a build made are moved or removed ---------------------------------------
@pytest.mark.parametrize("name", [".out.old", ".out.building"])
@pytest.mark.parametrize("existing_output", [False, True])
def test_a_foreign_folder_beside_the_output_is_never_touched(cli, tmp_path, name, existing_output):
    if existing_output:
        built(cli, tmp_path, "first build " * 20)
    mine = tmp_path / name / "mine.txt"
    mine.parent.mkdir()
    mine.write_text("the user's own\n")
    result = (
        cli("build", tmp_path / "r.yaml", "-w", "1", "--no-progress")
        if existing_output
        else (_build_fresh(cli, tmp_path))
    )
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert f"{tmp_path / name}: exists and was not made by a mixer build" in result.output
    assert mine.read_text() == "the user's own\n"
    assert not (tmp_path / "out" / "mine.txt").exists()
    assert not (tmp_path / ".out.lock").exists()


def _build_fresh(cli, tmp_path):
    return build(cli, tmp_path, "text " * 40)


def test_a_build_cut_between_its_renames_is_restored_and_rebuilt(cli, tmp_path):
    out = built(cli, tmp_path, "first build " * 20)
    (out / ".mixer-old").touch()  # what publish writes just before its first rename
    os.rename(out, tmp_path / ".out.old")
    result = cli("build", tmp_path / "r.yaml", "-w", "1", "--no-progress")
    assert result.exit_code == 0, result.output
    assert (out / "manifest.json").exists() and not (tmp_path / ".out.old").exists()
    assert not list(out.glob(".mixer-*"))
