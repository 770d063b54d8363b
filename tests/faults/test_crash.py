"""Killed builds, interrupted builds, concurrent builds: never a half-written output."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from mixer.artifacts.manifest import Manifest
from tests.helpers import DATA, TOKENIZER


def make_recipe(root: Path, copies: int = 6) -> Path:
    """A build slow enough to be killed in every phase: the books copied several times."""
    for i in range(copies):
        shutil.copytree(DATA / "books", root / "books" / f"copy{i}")
    shutil.copytree(DATA / "zh", root / "zh")
    recipe = {
        "seq_len": 64,
        "shard_size": "64KiB",
        "tokenizer": {"path": str(TOKENIZER)},
        "sources": {
            "books": {"files": "books/**/*.txt", "txt_mode": "line", "weight": 0.7},
            "zh": {"files": "zh/*.parquet", "weight": 0.3},
        },
        "validation": {"docs": 10},
        "output": "out",
    }
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def content(out: Path) -> dict:
    """Everything a build wrote, but the manifest's creation time."""
    files = {}
    for p in sorted(out.rglob("*")):
        # .mixer-building: left in the new output by a kill just after publish's last rename
        if p.is_file() and p.name not in ("manifest.json", ".mixer-building"):
            files[str(p.relative_to(out))] = p.read_bytes()
    m = Manifest.load(out).to_dict()
    m.pop("created")
    files["manifest"] = m
    return files


def run(recipe: Path, *args: str, **kw) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "mixer.cli", "build", str(recipe), "-w", "2", *args]
    return subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        **kw,
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("ref")
    recipe = make_recipe(root)
    t = time.perf_counter()
    proc = run(recipe)
    assert proc.wait() == 0, proc.stdout.read()
    return content(root / "out"), time.perf_counter() - t


@pytest.mark.parametrize("fraction", [0.15, 0.35, 0.55, 0.75, 0.9])
def test_sigkill_at_any_moment_then_rerun_gives_the_same_output(tmp_path, reference, fraction):
    expected, seconds = reference
    recipe = make_recipe(tmp_path)
    out = tmp_path / "out"
    # A previous complete output exists: a kill must leave it whole or leave nothing.
    first = run(recipe)
    assert first.wait() == 0
    before = content(out)
    proc = run(recipe, start_new_session=True)
    time.sleep(seconds * fraction)
    os.killpg(proc.pid, signal.SIGKILL)  # the build and its workers
    proc.wait()
    if out.exists():
        assert content(out) == before  # the previous output, whole
    rerun = run(recipe)
    log = rerun.stdout.read()
    assert rerun.wait() == 0, log
    assert content(out) == before
    shards = {k: v for k, v in before.items() if k.startswith("sources/")}
    assert shards == {k: v for k, v in expected.items() if k.startswith("sources/")}
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("."))
    assert leftovers == []


def interrupt_after(monkeypatch, done: int):
    """Make the build's third unit raise KeyboardInterrupt, as if the machine went down."""
    import mixer.builder.task
    import mixer.builder.worker

    calls = []

    def run_unit(*args, **kwargs):
        calls.append(1)
        if len(calls) == done + 1:
            raise KeyboardInterrupt
        return mixer.builder.worker.run_unit(*args, **kwargs)

    monkeypatch.setattr(mixer.builder.task, "run_unit", run_unit)


def test_an_interrupted_build_reuses_finished_units(tmp_path, cli, monkeypatch):
    recipe = make_recipe(tmp_path, copies=2)
    interrupt_after(monkeypatch, 2)
    result = cli("build", recipe, "-w", "1")
    assert result.exit_code == 130  # interrupted
    assert not (tmp_path / "out").exists()
    assert (tmp_path / ".out.building").is_dir()  # the finished units are kept
    monkeypatch.undo()
    result = cli("build", recipe, "-w", "1")
    assert result.exit_code == 0, result.output
    assert "(reused 2 of" in result.output
    result = cli("build", recipe, "-w", "1", "-o", tmp_path / "again")
    assert result.exit_code == 0
    assert content(tmp_path / "out") == content(tmp_path / "again")


def test_changed_inputs_are_not_reused(tmp_path, cli, monkeypatch):
    recipe = make_recipe(tmp_path, copies=2)
    interrupt_after(monkeypatch, 2)
    assert cli("build", recipe, "-w", "1").exit_code == 130
    monkeypatch.undo()
    first = sorted((tmp_path / "books").rglob("*.txt"))[0]
    first.write_text(first.read_text() + "\n\nA new last chapter.\n")
    result = cli("build", recipe, "-w", "1")
    assert result.exit_code == 0 and "(reused 1 of" in result.output
    result = cli("build", recipe, "-w", "1", "-o", tmp_path / "again")
    assert content(tmp_path / "out") == content(tmp_path / "again")


def test_a_second_build_of_the_same_output_fails_at_once(tmp_path, cli):
    recipe = make_recipe(tmp_path, copies=1)
    lock = tmp_path / ".out.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    os.write(fd, b"4242")
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another build holds it
    try:
        t = time.perf_counter()
        result = cli("build", recipe, "-w", "1")
        assert time.perf_counter() - t < 5
        assert result.exit_code == 2
        assert "another build is writing this output (pid 4242" in result.output
        assert not (tmp_path / "out").exists()
    finally:
        os.close(fd)
    assert cli("build", recipe, "-w", "1").exit_code == 0
    assert not lock.exists()


def test_a_publish_cut_between_its_renames_restores_the_previous_output(tmp_path, cli):
    recipe = make_recipe(tmp_path, copies=1)
    assert cli("build", recipe, "-w", "1").exit_code == 0
    before = content(tmp_path / "out")
    (tmp_path / "out" / ".mixer-old").touch()  # what publish marks the output with, then
    os.rename(tmp_path / "out", tmp_path / ".out.old")  # killed right after the first rename
    result = cli("stats", tmp_path / "out")
    assert result.exit_code == 2  # no output at the path: never a partial one
    assert cli("build", recipe, "-w", "1").exit_code == 0
    assert content(tmp_path / "out") == before


def test_a_publish_cut_while_flushing_keeps_its_work(tmp_path, cli, monkeypatch):
    """Killed while publish flushes the finished build (CI once killed there): the rerun knows
    the work folder as its own and publishes the same output."""
    import mixer.builder.outdir

    recipe = make_recipe(tmp_path, copies=1)
    assert cli("build", recipe, "-w", "1").exit_code == 0
    before = content(tmp_path / "out")

    def killed(root):
        raise KeyboardInterrupt

    monkeypatch.setattr(mixer.builder.outdir, "_fsync_tree", killed)
    assert cli("build", recipe, "-w", "1").exit_code == 130
    assert (tmp_path / ".out.building" / ".mixer-building").is_file()
    monkeypatch.undo()
    result = cli("build", recipe, "-w", "1")
    assert result.exit_code == 0, result.output
    assert content(tmp_path / "out") == before


def test_a_publish_cut_after_its_last_rename_is_finished_by_the_next_build(tmp_path, cli):
    recipe = make_recipe(tmp_path, copies=1)
    assert cli("build", recipe, "-w", "1").exit_code == 0
    (tmp_path / "out" / ".mixer-building").touch()  # the mark publish removes last
    assert cli("build", recipe, "-w", "1").exit_code == 0
    assert not (tmp_path / "out" / ".mixer-building").exists()
    assert cli("verify", tmp_path / "out").exit_code == 0
