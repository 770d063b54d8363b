"""The benchmarks under tools/ keep working: each runs end to end at a tiny size.

The numbers at this size mean nothing (README reports full runs, by hand); what is checked is
that the scripts still run against the current code and that what they compare is the same
work: identical token counts for the build, the planned replay share for serving.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.slow


def _run(tmp_path, script: str, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "MIXER_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / script), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = proc.stdout
    return json.loads(out[out.index("{") : out.rindex("}") + 1])


@pytest.mark.parametrize("tokenizer", ["qwen", "sentencepiece"])
def test_build_benchmark_runs_and_compares_the_same_tokens(tmp_path, tokenizer):
    res = _run(
        tmp_path,
        "bench_build.py",
        "--mb",
        "0.5",
        "--reps",
        "1",
        "--only",
        "compare",
        "--procs",
        "1,2",
        "--tokenizer",
        tokenizer,
        "--keep",
        str(tmp_path / "corpus"),
    )
    compare = res["compare"]
    assert compare["same_tokens"] is True and compare["same_fingerprint_as_before"] is True
    assert compare["build_encoder"] == ["gigatoken"]
    for p in (1, 2):
        assert compare[f"ratio_gigatoken_p{p}"] > 0 and compare[f"speedup_p{p}"] > 0
        assert (f"ratio_tiktoken_p{p}" in compare) == (tokenizer == "qwen")


def test_serving_benchmark_runs_and_serves_the_planned_shares(tmp_path):
    res = _run(
        tmp_path,
        "bench_mixture.py",
        "--blocks",
        "600",
        "--samples",
        "500",
        "--reps",
        "1",
        "--keep",
        str(tmp_path / "build"),
    )
    assert res["mixer_replay_share"] == pytest.approx(0.05)
    assert res["mixer"] > 0 and res["memmap"] > 0 and res["mixer_loader"] > 0
    assert res["disk_mixer_cache_bytes"] <= 1.1 * res["mixer_train_token_bytes"]


def test_cache_size_benchmark_runs_and_the_cache_is_the_tokens(tmp_path):
    res = _run(tmp_path, "bench_mixture.py", "--sizes", "1")
    for name in ("demo", "qwen"):
        assert res[f"{name}_tokens"] > 0
        assert res[f"{name}_cache_bytes"] <= 1.1 * res[f"{name}_token_bytes"]
    assert res["qwen_dtype"] == "uint32" and res["demo_dtype"] == "uint16"


def test_packing_benchmark_compares_both_packings_on_the_same_files(tmp_path):
    res = _run(tmp_path, "bench_packing.py", "--mb", "0.5", "--reps", "1", "--window", "256")
    concat, bestfit = res["concat"]["ledger"], res["bestfit"]["ledger"]
    assert concat["documents"] == bestfit["documents"] > 0
    assert concat["padding_tokens"] < 2048 * 6  # concat pads at most the last block of a split
    # best-fit cuts only the documents longer than a block; concat cuts at block boundaries
    assert bestfit["documents_cut"] == bestfit["documents"] - bestfit["documents_that_fit"]
    assert concat["documents_cut"] > bestfit["documents_cut"]
    assert res["bestfit_speed_vs_concat"] > 0
