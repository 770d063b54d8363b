"""Hostile and concurrent use, round two (issue 21): names, reports, neighbours, tracebacks."""

from __future__ import annotations

import pytest

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
