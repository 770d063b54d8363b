"""Readers: every input type, reading order, encodings, counted skips with locations."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from mixer.builder import units
from mixer.builder.readers import read_unit
from mixer.builder.units import plan_units
from mixer.recipe import parse_recipe

DOCS = ["In the beginning", "God created the heaven", "并且大地", "and the earth.\nSecond line"]


def _spec(tmp_path, files, **extra):
    (tmp_path / "tok.json").write_text("{}")
    r = parse_recipe(
        {
            "seq_len": 8,
            "tokenizer": {"path": "tok.json"},
            "sources": {"s": {"files": files, "weight": 1, **extra}},
        },
        base_dir=tmp_path,
    )
    return r.sources[0]


def _read(spec):
    """All (text, reason, location) of a source, unit by unit in order."""
    out = []
    for unit in plan_units(spec):
        for where, text, reason in read_unit(unit, spec):
            out.append((text, reason, unit.locate(where) if reason else None))
    return out


def _texts(spec):
    return [t for t, reason, _ in _read(spec) if reason is None]


def _jsonl(docs, field="text") -> bytes:
    return "".join(
        json.dumps({field: d, "id": i}, ensure_ascii=False) + "\n" for i, d in enumerate(docs)
    ).encode()


@pytest.mark.parametrize(
    "name,write",
    [
        ("d.jsonl", lambda p: p.write_bytes(_jsonl(DOCS))),
        ("d.jsonl.gz", lambda p: p.write_bytes(gzip.compress(_jsonl(DOCS)))),
        ("d.jsonl.zst", lambda p: p.write_bytes(zstandard.ZstdCompressor().compress(_jsonl(DOCS)))),
        ("d.json", lambda p: p.write_bytes(_jsonl(DOCS))),  # JSON lines in a .json file
        ("d.json", lambda p: p.write_text(json.dumps([{"text": d} for d in DOCS], indent=1))),
    ],
)
def test_json_formats(tmp_path, name, write):
    write(tmp_path / name)
    assert _texts(_spec(tmp_path, name)) == DOCS


def test_parquet_row_groups_in_order(tmp_path):
    table = pa.table({"id": list(range(10)), "body": [f"doc {i}" for i in range(10)]})
    pq.write_table(table, tmp_path / "d.parquet", row_group_size=3)
    spec = _spec(tmp_path, "d.parquet", text_field="body")
    units = plan_units(spec)
    assert [u.kind for u in units] == ["rowgroup"] * 4
    assert _texts(spec) == [f"doc {i}" for i in range(10)]


def test_parquet_nulls_and_missing_column_are_counted(tmp_path):
    pq.write_table(pa.table({"text": ["a", None, "  ", "b"]}), tmp_path / "d.parquet")
    got = _read(_spec(tmp_path, "d.parquet"))
    assert [(t, r) for t, r, _ in got] == [
        ("a", None),
        (None, "missing_field"),
        (None, "empty"),
        ("b", None),
    ]
    assert got[1][2].endswith("d.parquet row group 0 row 2")
    got = _read(_spec(tmp_path, "d.parquet", text_field="content"))
    assert [r for _, r, _ in got] == ["missing_field"] * 4


def test_txt_modes(tmp_path):
    (tmp_path / "a.txt").write_text("para one\nline two\n\n\n  \npara two\r\n\nlast")
    assert _texts(_spec(tmp_path, "a.txt")) == ["para one\nline two\n\n\n  \npara two\r\n\nlast"]
    assert _texts(_spec(tmp_path, "a.txt", txt_mode="paragraph")) == [
        "para one\nline two",
        "para two",
        "last",
    ]
    got = _read(_spec(tmp_path, "a.txt", txt_mode="line"))
    assert [t for t, r, _ in got if r is None] == ["para one", "line two", "para two", "last"]
    assert [loc for _, r, loc in got if r] == [f"{tmp_path}/a.txt:{n}" for n in (3, 4, 5, 7)]


def test_files_read_in_sorted_glob_order(tmp_path):
    for name in ("b.txt", "a.txt", "c.txt"):
        (tmp_path / name).write_text(name)
    assert _texts(_spec(tmp_path, "*.txt")) == ["a.txt", "b.txt", "c.txt"]
    assert _texts(_spec(tmp_path, ["c.txt", "a.txt"])) == ["c.txt", "a.txt"]


@pytest.mark.parametrize("encoding", ["gb18030", "big5"])
def test_legacy_chinese_encodings(tmp_path, encoding):
    text = "天地玄黃，宇宙洪荒。"
    (tmp_path / "a.txt").write_bytes(f"{text}\n第二行\n".encode(encoding))
    (tmp_path / "b.jsonl").write_bytes(
        (json.dumps({"text": text}, ensure_ascii=False) + "\n").encode(encoding)
    )
    assert _texts(_spec(tmp_path, "a.txt", txt_mode="line", encoding=encoding)) == [text, "第二行"]
    assert _texts(_spec(tmp_path, "b.jsonl", encoding=encoding)) == [text]
    # Read as UTF-8 by mistake: counted as undecodable, never garbage text.
    assert [r for _, r, _ in _read(_spec(tmp_path, "a.txt", txt_mode="line"))] == [
        "undecodable"
    ] * 2


def test_json_array_in_another_encoding(tmp_path):
    (tmp_path / "a.json").write_bytes(
        json.dumps([{"text": "天地"}], ensure_ascii=False).encode("gb18030")
    )
    assert _texts(_spec(tmp_path, "a.json", encoding="gb18030")) == ["天地"]


def test_bad_json_lines_are_counted_with_line_numbers(tmp_path):
    lines = [
        '{"text": "good one"}',
        '{"text": "broken',
        "",
        "[1, 2]",
        '{"title": "no text"}',
        '{"text": null}',
        '{"text": 42}',
        '{"text": "   "}',
        '{"text": "bad \\ud800 surrogate"}',
    ]
    data = ("\n".join(lines) + "\n").encode() + b'{"text": "\xff\xfe"}\n{"text": "good two"}\n'
    (tmp_path / "d.jsonl").write_bytes(data)
    got = _read(_spec(tmp_path, "d.jsonl"))
    reasons = [(r, loc.rsplit(":", 1)[1] if loc else None) for _, r, loc in got]
    assert reasons == [
        (None, None),
        ("malformed_json", "2"),
        ("not_a_record", "4"),
        ("missing_field", "5"),
        ("missing_field", "6"),
        ("not_text", "7"),
        ("empty", "8"),
        (None, None),  # lone surrogates pass the reader; the worker skips them at encoding
        ("undecodable", "10"),
        (None, None),
    ]


def test_large_files_split_into_ranges_read_the_same(tmp_path, monkeypatch):
    docs = [f"document number {i} " + "x" * (i % 37) for i in range(2000)]
    (tmp_path / "d.jsonl").write_bytes(_jsonl(docs))
    (tmp_path / "d.txt").write_text("\n".join(docs) + "\n")
    whole_json = _texts(_spec(tmp_path, "d.jsonl"))
    whole_txt = _texts(_spec(tmp_path, "d.txt", txt_mode="line"))
    monkeypatch.setattr(units, "RANGE_BYTES", 997)  # cuts fall mid-line
    spec = _spec(tmp_path, "d.jsonl")
    assert len(plan_units(spec)) > 40
    assert _texts(spec) == whole_json == docs
    assert _texts(_spec(tmp_path, "d.txt", txt_mode="line")) == whole_txt == docs


def test_line_numbers_in_later_ranges_are_global(tmp_path, monkeypatch):
    lines = [json.dumps({"text": f"doc {i}"}) for i in range(500)]
    lines[377] = "{oops"
    (tmp_path / "d.jsonl").write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(units, "RANGE_BYTES", 1000)
    got = [loc for _, r, loc in _read(_spec(tmp_path, "d.jsonl")) if r]
    assert got == [f"{tmp_path}/d.jsonl:378"]


@pytest.mark.parametrize(
    "name,payload",
    [
        ("d.jsonl.gz", lambda b: gzip.compress(b)[:-30]),
        ("d.jsonl.zst", lambda b: zstandard.ZstdCompressor().compress(b)[:-30]),
        ("d.jsonl.gz", lambda b: b""),
        ("d.jsonl.gz", lambda b: b"not gzip at all"),
        ("d.jsonl.zst", lambda b: b"not zstd at all"),
    ],
)
def test_truncated_or_corrupt_compressed_files_are_counted(tmp_path, name, payload):
    docs = [f"document {i} " * 20 for i in range(300)]
    (tmp_path / name).write_bytes(payload(_jsonl(docs)))
    got = _read(_spec(tmp_path, name))
    texts = [t for t, r, _ in got if r is None]
    assert texts == docs[: len(texts)]  # what was readable, in order
    if payload(b"x") != b"":
        assert got[-1][1] == "unreadable_file"


def test_corrupt_parquet_is_counted(tmp_path):
    pq.write_table(pa.table({"text": ["a", "b"]}), tmp_path / "d.parquet")
    data = (tmp_path / "d.parquet").read_bytes()
    (tmp_path / "d.parquet").write_bytes(data[: len(data) // 2])
    assert [r for _, r, _ in _read(_spec(tmp_path, "d.parquet"))] == ["unreadable_file"]


def test_hf_sources_streaming_and_not(tmp_path):
    for i in range(3):
        (tmp_path / f"part{i}.jsonl").write_bytes(_jsonl([f"p{i} d{j}" for j in range(4)]))
    (tmp_path / "tok.json").write_text("{}")
    for streaming in (True, False):
        spec = parse_recipe(
            {
                "seq_len": 8,
                "tokenizer": {"path": "tok.json"},
                "sources": {
                    "s": {
                        "hf": {"path": "json", "data_files": "part*.jsonl", "streaming": streaming},
                        "weight": 1,
                    }
                },
            },
            base_dir=tmp_path,
        ).sources[0]
        units = plan_units(spec)
        assert [u.kind for u in units] == (["hf-shard"] * 3 if streaming else ["hf-rows"])
        assert _texts(spec) == [f"p{i} d{j}" for i in range(3) for j in range(4)]
