"""Recipe `mixture.phases` and `sources.NAME.max_epochs`: parsing, to_dict, one error each."""

from __future__ import annotations

import copy

import pytest

from mixer.errors import RecipeError
from mixer.recipe import load_recipe


@pytest.fixture
def base(tmp_path) -> dict:
    (tmp_path / "tok.json").write_text("{}")
    (tmp_path / "a.jsonl").write_text('{"text": "x"}\n')
    src = {"files": "a.jsonl"}
    return {
        "seq_len": 16,
        "tokenizer": {"path": "tok.json"},
        "sources": {"books": dict(src), "replay": dict(src), "best": dict(src)},
        "mixture": {
            "samples": 1000,
            "phases": [
                {"name": "warm-up", "until": 0.05, "weights": {"books": 0.8, "replay": 0.2}},
                {"until": 0.9, "weights": {"books": 0.95, "replay": 0.05}},
                {"weights": {"best": 0.7, "replay": 0.3}},
            ],
        },
    }


def test_phases_are_read_in_order_and_to_dict_keeps_them(write_recipe, base):
    r = load_recipe(write_recipe(base))
    phases = r.mixture.phases
    assert [p.until for p in phases] == [0.05, 0.9, None]
    assert [p.name for p in phases] == ["warm-up", None, None]
    assert phases[0].weight("books") == 0.8 and phases[2].weight("books") == 0.0
    assert all(s.weight is None for s in r.sources)
    d = r.to_dict()
    assert d["mixture"]["phases"] == [
        {"name": "warm-up", "until": 0.05, "weights": {"books": 0.8, "replay": 0.2}},
        {"until": 0.9, "weights": {"books": 0.95, "replay": 0.05}},
        {"weights": {"best": 0.7, "replay": 0.3}},
    ]
    assert all("weight" not in s and "max_epochs" not in s for s in d["sources"])


def test_keys_left_unset_stay_out_of_to_dict(write_recipe, base):
    """A recipe without phases or max_epochs per source embeds the same record as before."""
    del base["mixture"]["phases"]
    for s in base["sources"].values():
        s["weight"] = 1
    d = load_recipe(write_recipe(base)).to_dict()
    assert set(d["mixture"]) == {"samples", "tokens", "max_epochs", "shuffle", "window"}
    assert all(s["weight"] == 1.0 and "max_epochs" not in s for s in d["sources"])
    base["sources"]["books"]["max_epochs"] = 3
    d = load_recipe(write_recipe(base)).to_dict()
    assert d["sources"][0]["max_epochs"] == 3.0 and "max_epochs" not in d["sources"][1]


def _phase(i):
    return f"mixture.phases.{i}"


_DELETE = object()

ERRORS = [
    (
        "not a list",
        "mixture.phases",
        {"until": 0.5},
        r"mixture\.phases: expected a non-empty list of phases",
    ),
    ("empty list", "mixture.phases", [], r"mixture\.phases: expected a non-empty list"),
    ("phase not a mapping", _phase(1), 0.5, r"mixture\.phases\[1\]: expected a mapping, got float"),
    (
        "unknown key",
        _phase(0) + ".wieghts",
        {"books": 1},
        r"mixture\.phases\[0\]\.wieghts: unknown key \(did you mean 'weights'\?\)",
    ),
    (
        "unknown source",
        _phase(1) + ".weights.bookz",
        0.1,
        r"mixture\.phases\[1\]\.weights\.bookz: no such source \(did you mean 'books'\?"
        r" sources: books, replay, best\)",
    ),
    ("until missing", _phase(1) + ".until", _DELETE, r"mixture\.phases\[1\]\.until: missing"),
    (
        "until not increasing",
        _phase(1) + ".until",
        0.05,
        r"mixture\.phases\[1\]\.until: must be greater than the previous phase's until 0\.05,"
        r" got 0\.05",
    ),
    (
        "until 1",
        _phase(1) + ".until",
        1,
        r"mixture\.phases\[1\]\.until: must be in \(0, 1\), got 1",
    ),
    (
        "until 0",
        _phase(0) + ".until",
        0,
        r"mixture\.phases\[0\]\.until: must be in \(0, 1\), got 0",
    ),
    (
        "until a string",
        _phase(0) + ".until",
        "5%",
        r"mixture\.phases\[0\]\.until: expected a number, got a string '5%'",
    ),
    (
        "last phase with until",
        _phase(2) + ".until",
        0.95,
        r"mixture\.phases\[2\]\.until: the last phase runs to the end of the plan; remove its",
    ),
    (
        "empty phase",
        _phase(1) + ".weights",
        {},
        r"mixture\.phases\[1\]\.weights: an empty phase: give at least one source a weight > 0",
    ),
    ("no weights", _phase(1) + ".weights", _DELETE, r"mixture\.phases\[1\]\.weights: missing"),
    (
        "weight zero",
        _phase(0) + ".weights.books",
        0,
        r"mixture\.phases\[0\]\.weights\.books: must be > 0, got 0 \(leave a source out",
    ),
    (
        "weight string",
        _phase(0) + ".weights.books",
        "lots",
        r"mixture\.phases\[0\]\.weights\.books: expected a number, got a string 'lots'",
    ),
    (
        "duplicate name",
        _phase(1) + ".name",
        "warm-up",
        r"mixture\.phases\[1\]: 'warm-up' names an earlier phase too",
    ),
    (
        "source never used",
        "sources.extra",
        {"files": "a.jsonl"},
        r"sources\.extra: no phase of mixture\.phases gives it a weight; add it to a phase",
    ),
    (
        "weight beside phases",
        "sources.books.weight",
        0.5,
        r"sources\.books\.weight: not used with mixture\.phases \(each phase has its own"
        r" weights\); remove it",
    ),
    (
        "no phases and no weight",
        "mixture.phases",
        _DELETE,
        r"sources\.books\.weight: missing required key \(or give per-phase weights in"
        r" mixture\.phases\)",
    ),
    (
        "source max_epochs zero",
        "sources.books.max_epochs",
        0,
        r"sources\.books\.max_epochs: must be > 0, got 0",
    ),
    (
        "source max_epochs string",
        "sources.books.max_epochs",
        "twice",
        r"sources\.books\.max_epochs: expected a number, got a string 'twice'",
    ),
]


def _set(d, dotted: str, value):
    *path, last = dotted.split(".")
    for k in path:
        d = d[int(k)] if isinstance(d, list) else d[k]
    if value is _DELETE:
        del d[int(last) if isinstance(d, list) else last]
    elif isinstance(d, list):
        d[int(last)] = value
    else:
        d[last] = value


@pytest.mark.parametrize("case,key,value,message", ERRORS, ids=[e[0] for e in ERRORS])
def test_phase_errors_name_the_key(write_recipe, base, case, key, value, message):
    data = copy.deepcopy(base)
    _set(data, key, value)
    path = write_recipe(data)
    with pytest.raises(RecipeError, match=message) as info:
        load_recipe(path)
    assert str(info.value).startswith(str(path) + ": ")
    assert "\n" not in str(info.value)


def test_cli_validate_reports_a_phase_error_in_one_line(cli, write_recipe, base):
    base["mixture"]["phases"][1]["until"] = 0.01
    result = cli("validate", write_recipe(base))
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and result.output.startswith("error: ")
    assert "mixture.phases[1].until: must be greater than" in result.output
