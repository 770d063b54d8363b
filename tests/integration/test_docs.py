"""Every ```bash and ```python block of README.md and docs/*.md runs, as written, on the demo.

A block that cannot run offline or needs a trainer says so on the line before it:
``<!-- no-test: why -->`` (and where a test runs the same thing instead). Each block runs in a
fresh folder laid out like the repository's root (``recipes/demo.yaml`` and its data), with the
demo built into ``out/demo``, with this checkout's mixer first on the path.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
_BLOCK = re.compile(
    r"(?:<!-- no-test: (?P<why>[^>]*?) -->\n)?```(?P<lang>bash|python)\n(?P<code>.*?)\n```", re.S
)
# README's install prefix (a new venv from PyPI): the test runs what follows it with this venv
_INSTALL = re.compile(r"python3 -m venv \.venv && \.venv/bin/pip install -q -e \. && ")
MOST_NOT_RUN = 14  # the few blocks marked no-test; a new one needs a reason and a look


def _blocks() -> list[tuple[str, str, str, str | None]]:
    """(id, language, code, why-not-run or None) of every bash and python block."""
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1]
    out = []
    for doc in DOCS:
        text = doc.read_text()
        for m in _BLOCK.finditer(text):
            line = text.count("\n", 0, m.start("lang")) + 1
            why = m.group("why")
            if m.group("code") == ci:  # test_readme.py: it is .ci/run's line, which CI runs
                why = "the CI command (tests/integration/test_readme.py)"
            out.append((f"{doc.relative_to(REPO)}:{line}", m.group("lang"), m.group("code"), why))
    return out


BLOCKS = _blocks()
# a block shown in two documents (README's training loop is docs/training.md's) runs once
_FIRST = {code: (ident, lang) for ident, lang, code, why in reversed(BLOCKS) if why is None}
RUN = [pytest.param(lang, code, id=ident) for code, (ident, lang) in reversed(_FIRST.items())]


def test_the_docs_have_runnable_blocks_and_few_that_are_not():
    not_run = [(ident, why) for ident, _, _, why in BLOCKS if why is not None]
    assert len(RUN) >= 4, [b[0] for b in BLOCKS]
    assert all(why.strip() for _, why in not_run)
    assert len(not_run) <= MOST_NOT_RUN + 1, not_run  # + README's CI command


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    """A folder like the repository's root, with the demo built in out/demo."""
    root = tmp_path_factory.mktemp("docs")
    (root / "recipes").mkdir()
    shutil.copy(REPO / "recipes" / "demo.yaml", root / "recipes" / "demo.yaml")
    (root / "recipes" / "data").symlink_to(REPO / "recipes" / "data")
    _run(["mixer", "build", "recipes/demo.yaml", "--no-progress"], root)
    return root


def _env() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, f"{args}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.slow
@pytest.mark.parametrize("lang, code", RUN)
def test_block_runs(lang, code, demo_root, tmp_path):
    cwd = tmp_path / "root"
    shutil.copytree(demo_root, cwd, symlinks=True)
    if lang == "bash":
        code = _INSTALL.sub("", code).replace(".venv/bin/", "")
        _run(["bash", "-euo", "pipefail", "-c", code], cwd)
    else:
        _run([sys.executable, "-c", code], cwd)
