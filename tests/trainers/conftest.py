"""Trainer tests: what a real trainer trains from a mixer build, across workers, ranks, resume.

A test needing a trainer calls :func:`require` (at module level, for a whole file): it skips
when the trainer is not installed, except when ``MIXER_REQUIRE_TRAINERS=1`` (CI), where a
missing trainer is a failure rather than a silently skipped test.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

from tests.helpers import build_demo

SEQ_LEN = 17  # litgpt trains rows of max_seq_length + 1 tokens: here 16 + 1


def require(module: str) -> ModuleType:
    """Import a trainer's module, or skip the test (fail under MIXER_REQUIRE_TRAINERS=1)."""
    if os.environ.get("MIXER_REQUIRE_TRAINERS") == "1":
        return importlib.import_module(module)
    return pytest.importorskip(module)


@pytest.fixture(scope="session")
def small_build(tmp_path_factory):
    """A small two-source build with a validation split: 400 samples of 17 tokens."""
    return build_demo(
        tmp_path_factory.mktemp("trainers"),
        {"web": 0.8, "zh": 0.2},
        seed=3,
        seq_len=SEQ_LEN,
        validation={"fraction": 0.05},
        mixture={"samples": 400},
    )


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"
