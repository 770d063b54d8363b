"""`litgpt pretrain` on a mixer build: the commands of examples/litgpt_continued_pretraining.md,
run on CPU with a tiny random model, then resumed; the rows litgpt trained are the plan's.

litgpt (0.5.13) lives beside transformers 4 (/work/venv4 here): these tests skip where it is
not installed, and fail there under MIXER_REQUIRE_TRAINERS=1.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from mixer import StreamingMixture
from mixer.cli import main as mixer_cli
from tests.helpers import REPO, TOKENIZER, demo_recipe
from tests.trainers.conftest import require

require("litgpt")

EXAMPLE = REPO / "examples" / "litgpt_continued_pretraining.md"
MODEL = {  # pythia-14m's architecture, shrunk
    "name": "tiny-pythia",
    "hf_config": {"org": "EleutherAI", "name": "pythia-14m"},
    "block_size": 16,
    "vocab_size": 8192,
    "padded_vocab_size": 8192,
    "n_layer": 1,
    "n_head": 2,
    "n_embd": 16,
    "rotary_percentage": 0.25,
    "parallel_residual": True,
    "bias": True,
}
MICRO, GLOBAL, SAVE_EVERY = 4, 8, 3  # 2 micro-batches per step; a checkpoint every 3 steps
FIRST_ROWS, TOTAL_ROWS = 24, 40


def example_commands() -> list[list[str]]:
    """The `litgpt pretrain` commands of the example, as argument lists."""
    blocks = re.findall(r"```bash\n(.*?)\n```", EXAMPLE.read_text(), flags=re.S)
    text = "\n".join(blocks).replace("\\\n", " ")
    return [shlex.split(line) for line in text.splitlines() if line.startswith("litgpt pretrain")]


def substitute(cmd: list[str], values: dict[str, str]) -> list[str]:
    """The command with the tiny run's values for the flags in ``values`` (kept in place)."""
    assert cmd[:3] == ["litgpt", "pretrain", "meta-llama/Meta-Llama-3-8B"], cmd
    out, args = ["pretrain", "pythia-14m", "--config", values["--config"]], cmd[3:]
    for flag, value in zip(args[::2], args[1::2], strict=True):
        out += [flag, values.get(flag, value)]
    return [*out, "--logger_name", "csv"]  # litgpt's default, TensorBoard, is not installed


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, str]:
    """The example's inputs, tiny: a build (books + replay), a model config and checkpoint."""
    root = tmp_path_factory.mktemp("litgpt")
    recipe = demo_recipe(root, {"books": 0.95, "web": 0.05}, seq_len=17)  # block_size 16, + 1
    recipe["sources"]["replay"] = recipe["sources"].pop("web")
    recipe.update(validation={"docs": 4}, mixture={"samples": 200})
    (root / "tiny.yaml").write_text(yaml.safe_dump(recipe))
    args = ["build", str(root / "tiny.yaml"), "-o", str(root / "out"), "-w", "1", "--no-progress"]
    result = CliRunner().invoke(mixer_cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (root / "config.yaml").write_text(yaml.safe_dump({"model_config": MODEL}))
    from litgpt import GPT, Config

    (root / "init").mkdir()  # in place of `litgpt download`: a random model in litgpt's format
    torch.manual_seed(0)
    torch.save(GPT(Config(**MODEL)).state_dict(), root / "init" / "lit_model.pth")
    (root / "tok").mkdir()
    (root / "tok" / "tokenizer.json").write_bytes(TOKENIZER.read_bytes())
    return {
        "--config": str(root / "config.yaml"),
        "--initial_checkpoint_dir": str(root / "init"),
        "--tokenizer_dir": str(root / "tok"),
        "--data.path": str(root / "out"),
        "--train.micro_batch_size": str(MICRO),
        "--train.global_batch_size": str(GLOBAL),
        "--train.save_interval": str(SAVE_EVERY),
        "--devices": "1",
        "--precision": "32-true",
    }


def litgpt(args: list[str], trace: Path, cache: Path) -> str:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),  # this checkout's mixer, in litgpt's process
        "CUDA_VISIBLE_DEVICES": "",
        "TORCH_COMPILE_DISABLE": "1",  # litgpt compiles the model: minutes on CPU, same rows
        "MIXER_CACHE": str(cache),
    }
    script = Path(__file__).with_name("litgpt_traced.py")
    proc = subprocess.run(
        [sys.executable, str(script), str(trace), *args], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def rows(trace: Path) -> list[list[int]]:
    return [json.loads(line) for line in trace.read_text().splitlines()]


def test_the_example_has_a_first_and_a_resuming_command():
    first, resume = example_commands()
    assert "--initial_checkpoint_dir" in first and "--resume" not in first
    assert resume[resume.index("--resume") + 1] == "auto"
    assert first[first.index("--data") + 1] == "mixer.integrations.litgpt.MixerData"
    strip = {"--initial_checkpoint_dir", "--resume"}
    pairs = [list(zip(c[3::2], c[4::2], strict=True)) for c in (first, resume)]
    assert [p for p in pairs[0] if p[0] not in strip] == [p for p in pairs[1] if p[0] not in strip]


@pytest.mark.slow
def test_example_trains_the_plans_rows_and_resumes_at_the_next(tiny, tmp_path):
    first, resume = example_commands()
    values = {**tiny, "--out_dir": str(tmp_path / "run"), "--train.max_tokens": str(24 * 16)}
    litgpt(substitute(first, values), tmp_path / "first.jsonl", tmp_path / "cache")
    ckpt = tmp_path / "run" / "step-00000003" / "lit_model.pth"
    saved = torch.load(ckpt, weights_only=True)  # the loader's state is plain data
    assert (saved["iter_num"], saved["step_count"]) == (FIRST_ROWS // MICRO, SAVE_EVERY)
    assert saved["train_dataloader"]["samples_seen"] == FIRST_ROWS
    values["--train.max_tokens"] = str(TOTAL_ROWS * 16)
    log = litgpt(substitute(resume, values), tmp_path / "resumed.jsonl", tmp_path / "cache")
    assert f"Resuming training from {ckpt}" in log
    plan = StreamingMixture(tiny["--data.path"], batch_size=MICRO, cache_dir=tmp_path / "c")
    expected = [x["input_ids"][1:].tolist() for x in itertools.islice(plan, TOTAL_ROWS)]
    assert rows(tmp_path / "first.jsonl") == expected[:FIRST_ROWS]
    assert rows(tmp_path / "resumed.jsonl") == expected[FIRST_ROWS:]


@pytest.mark.slow
def test_resume_on_a_plan_amended_at_the_checkpoint(tiny, tmp_path):
    """Steering a litgpt run: amend the plan at the checkpoint's sample, `--resume auto`: the
    rows trained are the old plan's up to the checkpoint, then the amended plan's."""
    import shutil

    from mixer import amend

    first, resume = example_commands()
    data = tmp_path / "out"
    shutil.copytree(tiny["--data.path"], data)
    values = {**tiny, "--data.path": str(data), "--out_dir": str(tmp_path / "run")}
    values["--train.max_tokens"] = str(FIRST_ROWS * 16)
    litgpt(substitute(first, values), tmp_path / "first.jsonl", tmp_path / "cache")
    old = StreamingMixture(data, batch_size=MICRO, cache_dir=tmp_path / "c")
    before = [x["input_ids"][1:].tolist() for x in itertools.islice(old, TOTAL_ROWS)]
    amend(data, at_sample=FIRST_ROWS, weights={"books": 0.5, "replay": 0.5}, note="more replay")
    values["--train.max_tokens"] = str(TOTAL_ROWS * 16)
    litgpt(substitute(resume, values), tmp_path / "resumed.jsonl", tmp_path / "cache")
    new = StreamingMixture(data, batch_size=MICRO, cache_dir=tmp_path / "c")
    after = [x["input_ids"][1:].tolist() for x in itertools.islice(new, TOTAL_ROWS)]
    assert after[:FIRST_ROWS] == before[:FIRST_ROWS] and after != before
    assert rows(tmp_path / "first.jsonl") == before[:FIRST_ROWS]
    assert rows(tmp_path / "resumed.jsonl") == after[FIRST_ROWS:]
