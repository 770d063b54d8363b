"""Many processes opening one remote build at once (every torchrun job over an s3:// build
starts so): the cached manifest.json and plan.json are replaced by a rename, never removed
first, so no process sees them missing or partial (issue 21)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from tests.helpers import REPO, build_demo
from tests.integration.test_remote import s3  # noqa: F401 (the moto S3 fixture)

CHILD = textwrap.dedent(
    """
    import sys, time
    import botocore.endpoint

    make = botocore.endpoint.Endpoint.make_request

    def slow(self, *args, **kwargs):  # a distant bucket: 50 ms a request
        time.sleep(0.05)
        return make(self, *args, **kwargs)

    botocore.endpoint.Endpoint.make_request = slow
    from mixer.artifacts.planfile import load_plan
    from mixer.serve.cache import open_build

    for _ in range(3):
        load_plan(open_build(sys.argv[1], sys.argv[2]))
    print("ok")
    """
)


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return build_demo(tmp_path_factory.mktemp("race"), {"web": 1}, seq_len=16)


@pytest.mark.slow
def test_processes_opening_one_remote_build_at_once_all_succeed(out, s3, tmp_path):  # noqa: F811
    upload, _ = s3
    upload(out, "race")
    procs = []
    for i in range(12):
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", CHILD, "s3://data/race", str(tmp_path / "cache")],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
        time.sleep(0.04 + 0.035 * (i % 2))  # staggered starts, 40-75 ms apart
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    failed = [o.strip().splitlines()[-1] for o in outputs if not o.strip().endswith("ok")]
    assert failed == [], f"{len(failed)} of {len(procs)} failed: {failed[:3]}"


@pytest.mark.slow
def test_ranks_serving_one_remote_build_under_a_cache_limit_serve_the_local_tokens():
    """tools/load_remote.py at a small size: 3 ranks x 2 workers for 20 s, one shared cache
    a third of the build's size (run by hand: 16 x 2 for a minute)."""
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "load_remote.py"), "--procs", "3", "--seconds", "20"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    last = result.stdout.strip().splitlines()[-1]
    assert " 0 failures;" in last and ", 0 batches" not in last, result.stdout
