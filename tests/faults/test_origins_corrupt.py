"""A provenance table that is corrupt or made elsewhere is refused in one line, never a crash."""

from __future__ import annotations

import random

import pytest

from mixer.artifacts.origins import OriginsTable
from mixer.errors import OutputError
from tests.helpers import build_demo


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    out = build_demo(tmp_path_factory.mktemp("origins"), {"zh": 1.0})
    return (out / "sources" / "zh" / "train" / "origins.bin").read_bytes()


def test_flipped_or_cut_bytes_are_refused_or_read(table, tmp_path):
    rng = random.Random(0)
    path = tmp_path / "origins.bin"
    refused = 0
    for _ in range(400):
        data = bytearray(table)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.2:
            data = data[: rng.randrange(len(data))]
        path.write_bytes(bytes(data))
        try:
            t = OriginsTable(path)
            for doc in t.documents(0, 1 << 40):
                t.unit(doc["unit"])
        except OutputError as e:
            assert "unreadable provenance table" in str(e) and "\n" not in str(e)
            refused += 1
    assert refused > 100  # most damage is seen (the rest changes only numbers)
