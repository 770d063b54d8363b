"""examples/hf_chinese_replay.py runs end to end on a small demo build (tiny random Llama)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import REPO, build_demo

pytest.importorskip("transformers")
pytest.importorskip("peft")

TINY = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": 4096,  # smaller than the build's 8,192: the script grows it, as for Chinese
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 128,
}


@pytest.mark.slow
def test_chinese_replay_example_trains_with_lora_and_reports_each_source(tmp_path):
    out = build_demo(tmp_path, mixture={"samples": 96}, validation={"fraction": 0.02})
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY))
    run = tmp_path / "run"
    cmd = [sys.executable, str(REPO / "examples" / "hf_chinese_replay.py"), "--config", str(config)]
    cmd += ["--build", str(out), "--output", str(run), "--lora-r", "4", "--lora-alpha", "8"]
    cmd += ["--max-steps", "3", "--eval-steps", "3", "--save-steps", "3", "--batch-size", "4"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=_env(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resizing the embeddings to the build's vocabulary: 8,192" in done.stdout
    losses = json.loads(done.stdout[done.stdout.rindex("{") :])
    assert set(losses) == {"eval_books_loss", "eval_web_loss", "eval_zh_loss"}
    assert all(7 < v < 10 for v in losses.values())  # ~ln(8192) = 9.0 for a random model
    state = json.loads((run / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    assert state["stateful_callbacks"]["MixerProgress"]["attributes"]["samples_seen"] == 12
    from safetensors import safe_open

    with safe_open(str(run / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert any("embed_tokens" in k for k in keys) and any("lm_head" in k for k in keys)
    assert any("lora_A" in k for k in keys)


def _env(tmp_path) -> dict:
    import os

    return {**os.environ, "MIXER_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(REPO)}
