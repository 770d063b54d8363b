"""Hostile and broken inputs: a counted skip or one clear error, memory bounded, never a crash."""

from __future__ import annotations

import contextlib
import gzip
import json
import tracemalloc

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mixer.artifacts.manifest import Manifest
from mixer.builder.lines import CONTINUES
from mixer.builder.readers import REASONS, read_unit
from mixer.builder.units import plan_units
from mixer.errors import RecipeError
from mixer.recipe import load_recipe, parse_recipe
from tests.helpers import TOKENIZER


def spec_for(tmp_path, files, **extra):
    return parse_recipe(
        {
            "seq_len": 8,
            "tokenizer": {"path": str(TOKENIZER)},
            "sources": {"s": {"files": files, "weight": 1, **extra}},
        },
        base_dir=tmp_path,
    ).sources[0]


def read_all(spec):
    return [item for u in plan_units(spec) for item in read_unit(u, spec)]


def build(cli, tmp_path, source: dict, **top):
    recipe = {
        "seq_len": 8,
        "tokenizer": {"path": str(TOKENIZER)},
        "output": "out",
        "sources": {"s": {"weight": 1, **source}},
        **top,
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    return cli("build", tmp_path / "r.yaml", "-w", "1")


def test_a_huge_json_line_is_skipped_in_bounded_memory(tmp_path):
    big = json.dumps({"text": "x" * (20 << 20)})  # 20 MB on one line
    (tmp_path / "d.jsonl").write_text('{"text": "before"}\n' + big + '\n{"text": "after"}\n')
    spec = spec_for(tmp_path, "d.jsonl", max_document_bytes="1MiB")
    tracemalloc.start()
    items = read_all(spec)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert [(t, r) for _, t, r in items] == [("before", None), (None, "too_long"), ("after", None)]
    assert peak < 6 << 20  # a few MiB (the 1 MiB limit and read buffers), never the 20 MB line


def test_a_huge_document_without_newline_is_streamed(tmp_path):
    """A 24 MB one-line text file (file mode) is read in pieces of about 1 MiB."""
    words = ("lorem ipsum dolor sit amet " * 40_000).encode()  # ~1 MB
    (tmp_path / "big.txt").write_bytes(words * 24)
    tracemalloc.start()
    pieces = 0
    spec = spec_for(tmp_path, "big.txt")
    for _, text, reason in (item for u in plan_units(spec) for item in read_unit(u, spec)):
        pieces += 1
        assert reason in (CONTINUES, None) and len(text) <= 2 << 20
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert pieces >= 12 and peak < 8 << 20


def traced_peak(folder, megabytes: int, monkeypatch) -> int:
    """Peak Python and numpy memory (tracemalloc) of a whole build of one document."""
    import mixer.builder.merge
    from mixer.builder import build as run_build

    (folder / "big.txt").write_bytes(("lorem ipsum dolor sit amet " * 40_000).encode() * megabytes)
    monkeypatch.setattr(mixer.builder.merge, "CHUNK_TOKENS", 1 << 18)  # scaled down with the input
    recipe = parse_recipe(
        {
            "seq_len": 64,
            "shard_size": "256KiB",
            "tokenizer": {"path": str(TOKENIZER)},
            "sources": {"s": {"files": "big.txt", "weight": 1}},
        },
        base_dir=folder,
        output=str(folder / "out"),
    )
    import streaming  # noqa: F401 (imported before measuring)

    tracemalloc.start()
    run_build(recipe, workers=1, show_progress=False)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_build_memory_does_not_grow_with_the_document(tmp_path, monkeypatch):
    """Peak memory is set by the batch, chunk and shard sizes, not by a document's size."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    small = traced_peak(tmp_path / "a", 2, monkeypatch)
    large = traced_peak(tmp_path / "b", 12, monkeypatch)  # 10 MB more, in one document
    assert large < small + (2 << 20), (small, large)  # ~35 MB either way, measured


@pytest.mark.parametrize(
    "name,data,reason",
    [
        ("nul.jsonl", b'{"text": "a\\u0000b"}\n', "binary"),
        ("nul.txt", b"some text\x00\x01\x02binary", "binary"),
        ("empty.jsonl", b"", None),
    ],
)
def test_nul_bytes_and_empty_files(tmp_path, name, data, reason):
    (tmp_path / name).write_bytes(data)
    items = read_all(spec_for(tmp_path, name))
    assert [r for _, _, r in items] == ([reason] if reason else [])


def test_mixed_encodings_in_one_file(tmp_path):
    lines = ["utf-8 line 中文".encode(), "gb18030 line 中文".encode("gb18030"), b"ascii"]
    (tmp_path / "m.txt").write_bytes(b"\n".join(lines) + b"\n")
    items = read_all(spec_for(tmp_path, "m.txt", txt_mode="line"))
    assert [(t, r) for _, t, r in items] == [
        ("utf-8 line 中文", None),
        (None, "undecodable"),
        ("ascii", None),
    ]


def test_broken_files_in_a_build_are_counted_not_fatal(cli, tmp_path):
    good = "".join(json.dumps({"text": f"doc {i} " * 9}) + "\n" for i in range(50)).encode()
    (tmp_path / "a.jsonl").write_bytes(good)
    (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress(good)[:-40])  # truncated
    (tmp_path / "c.jsonl.zst").write_bytes(b"")  # zero bytes
    (tmp_path / "d.parquet").write_bytes(b"PAR1 not really")
    result = build(cli, tmp_path, {"files": ["a.jsonl", "b.jsonl.gz", "c.jsonl.zst", "d.parquet"]})
    assert result.exit_code == 0, result.output
    skipped = Manifest.load(tmp_path / "out").sources["s"].skipped
    assert skipped == {"unreadable_file": 2}
    assert "b.jsonl.gz" in result.output and "d.parquet" in result.output


def test_a_source_of_empty_files_is_an_error(cli, tmp_path):
    (tmp_path / "e.jsonl").write_bytes(b"")
    (tmp_path / "f.txt").write_bytes(b"  \n\n ")
    result = build(cli, tmp_path, {"files": ["e.jsonl", "f.txt"]})
    assert result.exit_code == 2
    assert "sources.s: no document kept (empty 1: empty at " in result.output
    assert "f.txt:1" in result.output  # the file is named


@pytest.mark.parametrize("name", ["../x", "/abs", "a/b", "x y", "ünï", ".hidden", "-", "a" * 65])
def test_source_names_that_could_escape_the_output_are_refused(tmp_path, name):
    (tmp_path / "d.jsonl").write_text('{"text": "x"}\n')
    with pytest.raises(RecipeError, match="a source name must be 1-64 letters"):
        parse_recipe(
            {
                "seq_len": 8,
                "tokenizer": {"path": str(TOKENIZER)},
                "sources": {name: {"files": "d.jsonl", "weight": 1}},
            },
            base_dir=tmp_path,
        )


KINDS = {
    ".jsonl": lambda b: b,
    ".json": lambda b: b,
    ".txt": lambda b: b,
    ".jsonl.gz": lambda b: gzip.compress(b, mtime=0)[: max(1, len(b) // 2)],
    ".jsonl.zst": lambda b: zstandard.ZstdCompressor().compress(b)[: max(1, len(b) // 2)],
}


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.binary(max_size=3000),
    kind=st.sampled_from(sorted(KINDS)),
    mode=st.sampled_from(["file", "line", "paragraph"]),
    encoding=st.sampled_from(["utf-8", "gb18030", "latin-1"]),
)
def test_fuzz_readers_never_crash(tmp_path, data, kind, mode, encoding):
    path = tmp_path / f"f{kind}"
    path.write_bytes(KINDS[kind](data))
    spec = spec_for(
        tmp_path, path.name, txt_mode=mode, encoding=encoding, max_document_bytes="2KiB"
    )
    for where, text, reason in read_all(spec):
        assert isinstance(where, int)
        if reason in (None, CONTINUES):
            assert isinstance(text, str) and "\x00" not in text
        else:
            assert reason in REASONS and text is None


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(st.one_of(st.none(), st.text(max_size=50)), max_size=30), cut=st.integers(0, 200)
)
def test_fuzz_parquet_never_crashes(tmp_path, rows, cut):
    path = tmp_path / "f.parquet"
    pq.write_table(pa.table({"text": pa.array(rows, pa.string())}), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - cut] if cut else data)
    for _, text, reason in read_all(spec_for(tmp_path, "f.parquet")):
        assert (reason is None and isinstance(text, str)) or reason in REASONS


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    text=st.one_of(
        st.text(max_size=300), st.binary(max_size=300).map(lambda b: b.decode("latin-1"))
    )
)
def test_fuzz_recipe_loader_only_raises_recipe_errors(tmp_path, text):
    path = tmp_path / "r.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    try:
        load_recipe(path)
    except RecipeError as e:
        assert "\n" not in str(e)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    doc=st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10)),
        lambda kids: st.one_of(
            st.lists(kids, max_size=4),
            st.dictionaries(
                st.sampled_from(
                    [
                        "seq_len",
                        "tokenizer",
                        "sources",
                        "path",
                        "files",
                        "weight",
                        "validation",
                        "mixture",
                        "docs",
                        "fraction",
                        "samples",
                        "x",
                    ]
                ),
                kids,
                max_size=5,
            ),
        ),
        max_leaves=20,
    )
)
def test_fuzz_recipe_structures_only_raise_recipe_errors(tmp_path, doc):
    with contextlib.suppress(RecipeError):  # anything else fails the test
        parse_recipe(doc, base_dir=tmp_path)
