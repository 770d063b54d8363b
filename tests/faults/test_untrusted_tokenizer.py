"""`from:` trusts no recorded tokenizer identity: a build made with tokenizer Y whose manifest
claims the recipe's tokenizer X is refused (issue 21)."""

from __future__ import annotations

import json

import pytest

from tests.faults.test_untrusted import build_cli, local_copy, records, reuse_recipe, seal
from tests.helpers import TOKENIZER, build_demo


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """(x, y): the demo's web source built with the recipe's tokenizer X, and with Y (the
    same vocabulary, another decoder: another tokenizer.json)."""
    root = tmp_path_factory.mktemp("tok")
    x = build_demo(root / "x", {"web": 1}, seq_len=16)
    other = json.loads(TOKENIZER.read_text())
    other["decoder"] = None
    (root / "y.json").write_text(json.dumps(other))
    y = build_demo(root / "y", {"web": 1}, seq_len=16, tokenizer={"path": str(root / "y.json")})
    return x, y


@pytest.mark.parametrize("forged", ["identity", "identity-and-fingerprint"])
def test_a_linked_build_made_with_another_tokenizer_is_refused(builds, tmp_path, cli, forged):
    x, y = builds
    mx, _ = records(x)
    m, p = records(y)
    m["tokenizer"]["identity"] = mx["tokenizer"]["identity"]
    if forged == "identity-and-fingerprint":
        m["tokenizer"]["fingerprint"] = mx["tokenizer"]["fingerprint"]
    build = local_copy(y, tmp_path / "b", *seal(m, p))
    result = build_cli(cli, reuse_recipe(tmp_path, build, only_reuse=True))
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert "sources.replay.from: " in result.output
    assert "tokenizer fingerprint" in result.output, result.output
    assert not (tmp_path / "new").exists()


def test_a_linked_build_with_the_recipes_tokenizer_is_reused(builds, tmp_path, cli):
    x, _ = builds
    result = build_cli(cli, reuse_recipe(tmp_path, local_copy(x, tmp_path / "b"), True))
    assert result.exit_code == 0, result.output
    new = json.loads((tmp_path / "new" / "manifest.json").read_text())
    assert new["tokenizer"]["fingerprint"] == next(records(x))["tokenizer"]["fingerprint"]
