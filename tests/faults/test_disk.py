"""Full disks and unwritable folders: one clear line, and never an output that looks complete."""

from __future__ import annotations

import contextlib
import errno
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from mixer.artifacts.manifest import Manifest
from tests.helpers import DATA, TOKENIZER


def recipe_in(root: Path, out: Path, sources=("web",)) -> Path:
    for name in sources:
        if not (root / name).exists():
            copies = 12 if name == "books" else 1  # ~5 MB of text: several MB of output
            for i in range(copies):
                shutil.copytree(DATA / name, root / name / str(i))
    files = {"web": "web/*/*.jsonl*", "books": "books/*/*.txt", "zh": "zh/*/*.parquet"}
    recipe = {
        "seq_len": 32,
        "tokenizer": {"path": str(TOKENIZER)},
        "output": str(out),
        "sources": {n: {"files": files[n], "weight": 1} for n in sources},
    }
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


@contextlib.contextmanager
def mounted(target: Path, *options: str, source: str = "tmpfs"):
    """Mount a tmpfs (or bind) at target; skip with the reason if this machine forbids it."""
    target.mkdir(parents=True, exist_ok=True)
    cmd = ["mount", *options, source, str(target)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here ({done.stderr.strip()}); the simulated tests cover it")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def test_a_full_disk_is_one_line_and_keeps_the_previous_output(tmp_path, cli):
    with mounted(tmp_path / "small", "-t", "tmpfs", "-o", "size=3m") as disk:
        out = disk / "out"
        assert cli("build", recipe_in(tmp_path, out), "-w", "1").exit_code == 0
        before = Manifest.load(out).fingerprint
        big = recipe_in(tmp_path, out, sources=("web", "books", "zh"))
        result = cli("build", big, "-w", "1", "--no-progress")
        assert result.exit_code == 2, result.output
        assert result.output.count("\n") == 1
        assert "no space left on the device; free space and rerun" in result.output
        assert Manifest.load(out).fingerprint == before  # the previous output, whole


def test_a_read_only_folder_is_one_line(tmp_path, cli):
    (tmp_path / "src").mkdir()
    with mounted(tmp_path / "ro", "--bind", "-o", "ro", source=str(tmp_path / "src")) as ro:
        result = cli("build", recipe_in(tmp_path, ro / "out"), "-w", "1", "--no-progress")
        assert result.exit_code == 2
        assert "cannot write there (Read-only file system)" in result.output
        assert result.output.count("\n") == 1


def test_simulated_full_disk_while_writing_shards(tmp_path, cli, monkeypatch):
    import mixer.artifacts.shards

    out = tmp_path / "out"
    assert cli("build", recipe_in(tmp_path, out), "-w", "1").exit_code == 0
    before = Manifest.load(out).fingerprint

    def no_space(self, packed):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.out_dir / "shard"))

    monkeypatch.setattr(mixer.artifacts.shards.ShardWriter, "write", no_space)
    result = cli("build", recipe_in(tmp_path, out, ("web", "zh")), "-w", "1", "--no-progress")
    assert result.exit_code == 2
    assert "shard: no space left on the device; free space and rerun" in result.output
    assert Manifest.load(out).fingerprint == before


def test_simulated_unwritable_output_folder(tmp_path, cli, monkeypatch):
    real = Path.mkdir

    def forbidden(self, *args, **kwargs):
        if self.name.endswith(".building"):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", forbidden)
    result = cli("build", recipe_in(tmp_path, tmp_path / "out"), "-w", "1")
    assert result.exit_code == 2
    assert "cannot write there (Permission denied); choose another output" in result.output
    assert not (tmp_path / "out").exists() and not (tmp_path / ".out.lock").exists()


def test_simulated_full_disk_while_writing_completion_records(tmp_path, cli, monkeypatch):
    """Completion records are written on a background thread: a failure there is still the
    build's one line, and the previous output stays."""
    import mixer.builder.run_units

    out = tmp_path / "out"
    assert cli("build", recipe_in(tmp_path, out), "-w", "1").exit_code == 0
    before = Manifest.load(out).fingerprint
    real = mixer.builder.run_units.save_record
    calls = []

    def no_space(work, unit, *args):
        calls.append(unit)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(work / "units" / "rec"))
        return real(work, unit, *args)

    monkeypatch.setattr(mixer.builder.run_units, "save_record", no_space)
    result = cli("build", recipe_in(tmp_path, out, ("web", "zh")), "-w", "1", "--no-progress")
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1
    assert "rec: no space left on the device; free space and rerun" in result.output
    assert Manifest.load(out).fingerprint == before
