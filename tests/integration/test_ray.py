"""The Ray engine on a local Ray instance: the same bytes as the local engine."""

from __future__ import annotations

import shutil

import pytest
import yaml

from tests.helpers import DATA, TOKENIZER


def test_ray_engine_gives_the_local_engines_bytes(cli, tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'mixer[ray]')")
    try:  # skipped only where Ray cannot start at all, with the reason
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"Ray cannot start on this machine: {e}")
    try:
        for name in ("web", "zh"):
            shutil.copytree(DATA / name, tmp_path / name)
        recipe = {
            "seq_len": 64,
            "tokenizer": {"path": str(TOKENIZER)},
            "validation": {"docs": 5},
            "sources": {
                "web": {"files": "web/*.jsonl*", "weight": 0.3},
                # one source best-fit packed: its padding file and table reordered, too
                "zh": {"files": "zh/*.parquet", "weight": 0.7, "packing": "bestfit"},
            },
        }
        (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
        outs = {}
        for engine in ("local", "ray"):
            out = tmp_path / engine
            result = cli("build", tmp_path / "r.yaml", "-o", out, "--engine", engine, "-w", "2")
            assert result.exit_code == 0, result.output
            outs[engine] = {
                str(p.relative_to(out)): p.read_bytes()
                for p in sorted(out.rglob("*"))
                if p.is_file() and p.name != "manifest.json"
            }
        assert outs["local"] == outs["ray"]
        assert any(k.endswith(".zstd") for k in outs["ray"])
        assert "sources/zh/train/padding.bin" in outs["ray"]
    finally:
        ray.shutdown()
