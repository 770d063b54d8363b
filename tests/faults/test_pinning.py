"""Serving tied to what was checked (issue 21): a pinned plan fingerprint, cache folders
private to the user, a cached shard checked against the hash recorded when it was unpacked."""

from __future__ import annotations

import json
import stat

import numpy as np
import pytest

from mixer import StreamingMixture
from mixer.errors import UsageError
from mixer.serve.loader import MixerLoader
from tests.faults.test_untrusted import local_copy, records, seal
from tests.helpers import build_demo


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return build_demo(
        tmp_path_factory.mktemp("pin"), {"web": 1, "zh": 1}, seq_len=16, shard_size="8KiB"
    )


def printed_plan_fingerprint(cli, build) -> str:
    result = cli("verify", build)
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("plan fingerprint: "))
    assert any(x.startswith("manifest fingerprint: ") for x in result.output.splitlines())
    return line.split()[2]


def test_a_plan_swapped_in_after_verify_is_refused(out, tmp_path, cli):
    build = local_copy(out, tmp_path / "b")
    pinned = printed_plan_fingerprint(cli, build)
    assert (
        StreamingMixture(build, cache_dir=tmp_path / "c", expect=pinned).plan.fingerprint == pinned
    )
    m, p = records(out)
    p["sources"][0]["weight"] = 0.25  # another mixture of the same blocks, fingerprints resealed
    (build / "plan.json").write_text(json.dumps(seal(m, p)[1]))
    StreamingMixture(build, cache_dir=tmp_path / "c")  # unpinned: the swapped plan loads
    for split in ("train", "val"):
        with pytest.raises(
            UsageError, match=rf"its plan's fingerprint is \w+, not the expected {pinned}"
        ):
            StreamingMixture(build, split, cache_dir=tmp_path / "c", expect=pinned)
    with pytest.raises(UsageError, match="not the expected"):
        MixerLoader(str(build), 4, cache_dir=tmp_path / "c", expect=pinned)


def test_cache_folders_are_private_to_the_user(out, tmp_path):
    cache = tmp_path / "cache" / "deep"
    list(StreamingMixture(out, cache_dir=cache))
    folders = [cache, *[p for p in cache.rglob("*") if p.is_dir()]]
    assert len(folders) > 3
    for folder in folders:
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


def test_a_cached_shard_edited_after_it_was_unpacked_is_filled_again(out, tmp_path):
    ds = StreamingMixture(out, cache_dir=tmp_path / "c")
    store = ds._store("web")
    want = store.tokens(np.arange(4)).copy()
    path = store.shard_path(0)
    data = bytearray(path.read_bytes())
    data[64:66] = b"\xff\xff"  # token 65,535 with a vocabulary of 8,192
    path.write_bytes(bytes(data))
    fresh = StreamingMixture(out, cache_dir=tmp_path / "c")._store("web")  # another process
    assert (fresh.tokens(np.arange(4)) == want).all()
    assert path.read_bytes()[64:66] != b"\xff\xff"
