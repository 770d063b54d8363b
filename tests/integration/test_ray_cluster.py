"""The Ray engine on a real cluster: a head node and a second node, each its own `ray start`
process on this machine (tools/ray_cluster.py), token authentication on, as on a cluster.

The build gives the local engine's bytes, and a node killed while it runs units is either
survived (its tasks run again elsewhere) or reported in one line, with the output never
half-published.
"""

from __future__ import annotations

import json
import shutil
import time

import pytest
import yaml

from mixer.artifacts.manifest import Manifest
from tests.helpers import DATA, REPO, TOKENIZER

pytest.importorskip("ray", reason="Ray is not installed (pip install 'mixer[ray]')")
pytestmark = pytest.mark.slow

from tools.ray_cluster import build as cluster_build  # noqa: E402
from tools.ray_cluster import local_cluster  # noqa: E402


def _files(out) -> dict[str, bytes]:
    """Every file of a build, the manifest without its creation time."""
    got = {}
    for p in sorted(out.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            if p.name == "manifest.json":
                d = json.loads(data)
                del d["created"]
                data = json.dumps(d, sort_keys=True).encode()
            got[str(p.relative_to(out))] = data
    return got


def _recipe(tmp_path, tokenizer: str, copies: int = 1):
    """The demo's web and zh sources (``copies`` times the web files: more units)."""
    shutil.copytree(DATA / "zh", tmp_path / "zh")
    (tmp_path / "web").mkdir()
    for i in range(copies):
        for f in (DATA / "web").iterdir():
            shutil.copy(f, tmp_path / "web" / f"{i}-{f.name}")
    recipe = {
        "seq_len": 64,
        "tokenizer": {"path": tokenizer},
        "validation": {"docs": 5},
        "sources": {
            "web": {"files": "web/*.jsonl*", "weight": 0.3},
            "zh": {"files": "zh/*.parquet", "weight": 0.7},
        },
    }
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_a_two_node_cluster_build_is_the_local_build_byte_for_byte(cli, tmp_path):
    recipe = _recipe(tmp_path, str(TOKENIZER))
    local = cli("build", recipe, "-o", tmp_path / "local", "-w", "2")
    assert local.exit_code == 0, local.output
    with local_cluster(tmp_path / "ray-logs", nodes=2, cpus=1) as cluster:
        assert cluster.alive_nodes() == 2
        proc = cluster_build(cluster, recipe, tmp_path / "ray", 2, "--no-progress")
        log = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, log
    assert _files(tmp_path / "ray") == _files(tmp_path / "local")


def test_a_node_killed_during_the_build_is_survived_or_reported_in_one_line(cli, tmp_path):
    """Slow units (the SentencePiece tokenizer through `tokenizers`), the second node killed
    once the first units are in: the build ends with the local build's bytes (tasks retried
    on the head), or with one line and nothing published."""
    sp = str(REPO / "tests" / "data" / "llama2_sp.json")
    recipe = _recipe(tmp_path, sp, copies=3)
    args = ("--encoder", "tokenizers")
    local = cli("build", recipe, "-o", tmp_path / "local", "-w", "2", *args)
    assert local.exit_code == 0, local.output
    out = tmp_path / "ray"
    with local_cluster(tmp_path / "ray-logs", nodes=2, cpus=1) as cluster:
        proc = cluster_build(cluster, recipe, out, 2, "--no-progress", *args)
        lines = []
        for line in proc.stdout:  # a JSON line per finished unit
            lines.append(line)
            if '"event": "unit"' in line:
                break
        time.sleep(1)  # the second node is running a unit now
        cluster.kill(cluster.nodes[1])
        log = "".join(lines) + proc.communicate(timeout=600)[0]
    if proc.returncode == 0:
        assert _files(out) == _files(tmp_path / "local"), log
        Manifest.load(out)
    else:
        assert proc.returncode == 2, log
        errors = [line for line in log.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "Traceback" not in log, log
        assert "--engine ray: a work unit was lost" in errors[0]
        assert not out.exists()  # never half-published
