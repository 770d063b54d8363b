"""Shared fixtures: the repo's small tokenizer and texts, recipe writing, the CLI runner."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from tests import helpers  # noqa: F401 (sets the offline HF environment first)

_FOLDER_MARKS = {
    "unit": "unit",
    "integration": "integration",
    "distributed": "distributed",
    "faults": "faults",
    "trainers": "trainers",
}


def pytest_collection_modifyitems(config, items):
    """Each test carries its folder's marker, so `-m` selects by kind."""
    for item in items:
        folder = Path(str(item.fspath)).parent.name
        if folder in _FOLDER_MARKS:
            item.add_marker(getattr(pytest.mark, _FOLDER_MARKS[folder]))


@pytest.fixture
def write_recipe(tmp_path):
    """write_recipe(dict, name="recipe.yaml") -> path of the YAML file in tmp_path."""

    def write(data: dict, name: str = "recipe.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
        return path

    return write


@pytest.fixture
def cli():
    """cli("build", "r.yaml", ...) -> click Result; stdout and stderr both in .output."""
    from mixer.cli import main

    def run(*args: str):
        return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)

    return run
