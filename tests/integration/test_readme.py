"""README's promises that a test can hold: the CI command, the shipped recipes."""

from __future__ import annotations

import re

from tests.helpers import REPO


def _bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)\n```", (REPO / "README.md").read_text(), flags=re.S)


def test_readme_opens_with_the_two_commands_and_ci_runs_the_second():
    text = (REPO / "README.md").read_text()
    demo, tests = _bash_blocks()[:2]
    assert text.index(demo) < 200  # they open the README
    assert "mixer build recipes/demo.yaml" in demo and "mixer stats out/demo" in demo
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci == tests


def test_shipped_recipes_validate(cli):
    for recipe in sorted((REPO / "recipes").glob("*.yaml")):
        result = cli("validate", recipe)
        assert result.exit_code == 0, result.output
        assert ": ok (" in result.output
