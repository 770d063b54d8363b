"""A build read from someone else's bucket is data: hostile manifests, plans, index files and
shards, their fingerprints recomputed (as anyone can), served from S3 (moto) or read locally.

Each must end in one clear error before anything is downloaded or written for it (or, where
the change is harmless, serve only the build's own blocks), and never create a file outside
the cache or the output.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import os
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import yaml
import zstandard

from mixer import StreamingMixture
from mixer.artifacts.manifest import Manifest
from mixer.builder.pack import Packed
from mixer.errors import OutputError, UnsafeBuildError
from mixer.identity import digest
from mixer.plan import Plan
from mixer.typed import FieldError, from_json
from tests.helpers import TOKENIZER, build_demo
from tests.integration.test_remote import s3  # noqa: F401 (the moto S3 fixture)

TRAVERSAL = "../../../../../PWNED.txt"


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return build_demo(
        tmp_path_factory.mktemp("untrusted"), {"web": 1, "zh": 1}, seq_len=16, shard_size="8KiB"
    )


# -- helpers (also used by test_untrusted_fuzz.py) ------------------------------------------
def seal(manifest: dict, plan: dict) -> tuple[dict, dict]:
    """Both files with their fingerprints recomputed, the plan pointing at the manifest: what
    anyone can do, so that hostile values get past the fingerprint checks."""
    body = {k: v for k, v in manifest.items() if k not in ("created", "fingerprint")}
    try:
        fp = from_json(Manifest, manifest, "manifest").computed_fingerprint()
    except FieldError:
        fp = digest(body)
    manifest = {**manifest, "fingerprint": fp}
    plan = {**plan, "manifest": fp}
    try:
        plan["fingerprint"] = Plan.from_dict(plan).fingerprint
    except FieldError:
        plan["fingerprint"] = digest({k: v for k, v in plan.items() if k != "fingerprint"})
    return manifest, plan


def records(out: Path) -> tuple[dict, dict]:
    return (json.loads((out / n).read_text()) for n in ("manifest.json", "plan.json"))


def tree(root: Path) -> set[Path]:
    return set(root.rglob("*"))


def created_outside(before: set[Path], root: Path, *allowed: Path) -> list[Path]:
    """Paths under ``root`` that appeared since ``before`` outside every ``allowed`` folder
    (its parents excepted: they are made for it)."""
    new = tree(root) - before
    ok = [a for a in allowed if a.is_relative_to(root)]
    return sorted(p for p in new if not any(p.is_relative_to(a) or a.is_relative_to(p) for a in ok))


def local_copy(out: Path, dest: Path, manifest: dict | None = None, plan: dict | None = None):
    """A copy of the build (shards hard-linked) with these manifest and plan JSON."""
    shutil.copytree(out, dest, copy_function=os.link)
    for name, data in (("manifest.json", manifest), ("plan.json", plan)):
        if data is not None:
            (dest / name).unlink()
            (dest / name).write_text(json.dumps(data))
    return dest


def rename_source(old: str, new: str):
    def change(m, p):
        m["sources"] = {new if k == old else k: v for k, v in m["sources"].items()}
        for s in p["sources"]:
            s["name"] = new if s["name"] == old else s["name"]

    return change


def shard(m, i=0, split="train", source="web") -> dict:
    return m["sources"][source][split]["shards"][i]


def set_shard(**values):
    return lambda m, p: shard(m).update(values)


def grow_blocks(m, p):
    n = 10**12
    shard(m)["samples"] += n
    m["sources"]["web"]["train"]["blocks"] += n
    m["sources"]["web"]["train"]["tokens"] += n * m["seq_len"]


def planned(p, name="web") -> dict:
    return next(s for s in p["sources"] if s["name"] == name)


def web_plan(**values):
    return lambda m, p: planned(p).update(values)


def plan_past_blocks(m, p):
    planned(p)["num_blocks"] += 1000
    planned(p)["shard_sizes"][-1] += 1000


def plan_total(m, p):
    planned(p)["num_samples"] = 10**18
    p["total"] = 10**18 + planned(p, "zh")["num_samples"]


def plan_phases(m, p):
    n = [s["num_samples"] for s in p["sources"]]
    p["phases"] = [
        {"name": "a", "until": 0.5, "end": 10, "weights": [1.0, 1.0], "counts": [5, 5]},
        {"name": None, "until": None, "end": p["total"], "weights": [1.0, 1.0], "counts": n},
    ]


def add_take(**values):
    """A `take` record on the web source (a build with a read budget), with these values."""
    take = {"budget": "auto", "measure": "train_tokens", "amount": 64.0, "documents": 1}
    take |= {"tokens": 1, "units": 1, "stopped": "web.jsonl@10", "exhausted": False}
    take |= {"bytes_read": 10, "selection": "0" * 64, **values}
    return lambda m, p: m["sources"]["web"].update(take=take)


HOSTILE = {
    "shard-traversal": (set_shard(file=TRAVERSAL), r"shards\[0\]\.file: '\.\./\.\./"),
    "shard-absolute": (set_shard(file="<tmp>/PWNED.txt"), r"shards\[0\]\.file: '/"),
    "shard-home": (set_shard(file="~/.bashrc"), r"shards\[0\]\.file: '~/\.bashrc' is not a"),
    "shard-url": (set_shard(file="s3://other/shard.00000.mds.zstd"), r"file: 's3://other/"),
    "shard-file-url": (set_shard(file="file:///etc/passwd"), r"file: 'file:///etc/passwd'"),
    "shard-twice": (set_shard(file="shard.00001.mds.zstd"), r"shard\.00001\.mds\.zstd is listed"),
    "source-slash": (rename_source("web", "a/b"), r"manifest\.sources\.a/b: 'a/b' is not a sour"),
    "source-dotdot": (rename_source("web", ".."), r"manifest\.sources\.\.\.: '\.\.' is not"),
    "source-traversal": (rename_source("web", "../../x"), r"'\.\./\.\./x' is not a source name"),
    "tokenizer-file": (
        lambda m, p: m["tokenizer"]["files"].update({"../../x": "0" * 64}),
        r"manifest\.tokenizer\.files\.\.\./\.\./x: '\.\./\.\./x' is not a plain file name",
    ),
    "seq-len-huge": (lambda m, p: m.update(seq_len=10**9), r"manifest\.seq_len: 1000000000 is"),
    "seq-len-other": (lambda m, p: m.update(seq_len=32), r"web\.train\.tokens: \d+ does not add"),
    "blocks-huge": (
        lambda m, p: m["sources"]["web"]["train"].update(blocks=10**15),
        r"web\.train\.blocks: 1000000000000000 is not the sum of its shards' samples",
    ),
    "samples-huge": (grow_blocks, r"shards\[0\]\.raw_bytes: [\d,]+ bytes cannot hold"),
    "raw-bytes-huge": (set_shard(raw_bytes=1 << 40), r"raw_bytes: 1099511627776 is outside"),
    "bytes-beyond-zstd": (set_shard(bytes=1 << 30), r"shards\[0\]\.bytes: 1073741824 is outsi"),
    "sha-shape": (set_shard(sha256="../x"), r"shards\[0\]\.sha256: '\.\./x' is not a sha256"),
    "dtype": (lambda m, p: m["tokenizer"].update(dtype="object"), r"dtype: 'object' is not"),
    "vocab": (lambda m, p: m["tokenizer"].update(vocab_size=0), r"vocab_size: 0 is outside"),
    "vocab-dtype": (
        lambda m, p: m["tokenizer"].update(vocab_size=1 << 20),
        r"tokenizer\.vocab_size: 1048576 is outside \[1, 65,536\]",
    ),
    "padding": (
        lambda m, p: m["sources"]["web"]["train"].update(padding_tokens=10**6),
        r"web\.train\.padding_tokens: 1000000 is outside \[0, 15\]",
    ),
    "ledger-count": (
        lambda m, p: m["ledger"]["web"]["train"].update(documents_cut=10**9),
        r"manifest\.ledger\.web\.train\.documents_cut: 1000000000 is outside \[0, ",
    ),
    "ledger-source": (
        lambda m, p: m["ledger"].update({"../x": m["ledger"]["web"]}),
        r"manifest\.ledger\.\.\./x: is not a source of the build",
    ),
    "padding-file": (
        lambda m, p: m["sources"]["web"]["train"].update(
            padding={"file": "../x", "bytes": 4, "sha256": "0" * 64}
        ),
        r"web\.train\.padding\.file: is not padding\.bin",
    ),
    "control-chars": (lambda m, p: m.update(name="x\x1b]0;pwned\x07"), r"manifest\.name: holds"),
    "take-stopped": (add_take(stopped="a\x1b[2J"), r"web\.take\.stopped: holds control"),
    "take-count": (add_take(documents=-1), r"web\.take\.documents: -1 is outside"),
    "plan-past-blocks": (plan_past_blocks, r"plan\.sources\[\d\]\.num_blocks: differs from"),
    "plan-counts": (web_plan(num_samples=10**6), r"plan\.total: \d+ is not the sum of the sou"),
    "plan-total-huge": (plan_total, r"plan\.total: 1\d{18} is outside \[0, "),
    "plan-source": (web_plan(name="books"), r"plan\.sources: names \[.*\] are not the manif"),
    "plan-shards": (web_plan(shard_sizes=[1]), r"plan\.sources\[\d\]\.shard_sizes: differ fr"),
    "plan-phases": (plan_phases, r"plan\.phases\[1\]\.counts: do not sum to its length"),
    "plan-window": (lambda m, p: p.update(window=0), r"plan\.window: 0 is outside"),
    "plan-split": (lambda m, p: p.update(split="val"), r"plan\.split: 'val' is not 'train'"),
}


def hostile(out: Path, name: str, tmp: Path) -> tuple[dict, dict, str]:
    change, message = HOSTILE[name]
    m, p = records(out)
    change(m, p)
    for s in m["sources"].get("web", {}).get("train", {}).get("shards", []):
        s["file"] = s["file"].replace("<tmp>", str(tmp))
    m, p = seal(m, p)
    return m, p, message


def publish(bucket, out: Path, prefix: str, manifest: dict, plan: dict, objects=()) -> str:
    """The build uploaded under ``prefix`` (``bucket``: the s3 fixture) with these records
    (and extra objects)."""
    upload, client = bucket
    upload(out, prefix)
    for key, body in [
        ("manifest.json", json.dumps(manifest).encode()),
        ("plan.json", json.dumps(plan).encode()),
        *objects,
    ]:
        client.put_object(Bucket="data", Key=f"{prefix}/{key}", Body=body)
    return f"s3://data/{prefix}"


# -- a hostile remote build: refused before any download -----------------------------------
@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_remote_build_is_refused_before_any_download(out, s3, tmp_path, name):  # noqa: F811
    m, p, message = hostile(out, name, tmp_path)
    evil = [(f"sources/web/train/{TRAVERSAL}", b"attacker bytes\n")]
    url = publish(s3, out, name, m, p, evil)
    cache = tmp_path / "a" / "b" / "c" / "d" / "e" / "cache"  # a traversal lands in tmp_path
    before = tree(tmp_path)
    with pytest.raises(UnsafeBuildError, match=message) as e:
        StreamingMixture(url, cache_dir=cache)
    assert "\n" not in str(e.value) and str(e.value).startswith(f"{url}/")
    assert created_outside(before, tmp_path, cache) == []
    downloaded = {p.name for p in cache.rglob("*") if p.is_file()}
    assert downloaded <= {"manifest.json", "plan.json"}, downloaded


@pytest.mark.parametrize("name", ["shard-traversal", "source-dotdot", "plan-past-blocks"])
def test_the_cli_on_a_hostile_remote_build_says_one_line(out, s3, tmp_path, cli, name, monkeypatch):  # noqa: F811
    m, p, message = hostile(out, name, tmp_path)
    url = publish(s3, out, name, m, p)
    monkeypatch.setenv("MIXER_CACHE", str(tmp_path / "cache"))
    for args in (("stats", url), ("inspect", url, "--sample", "0")):
        result = cli(*args)
        assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
        assert result.output.startswith(f"error: {url}/") and "refused: " in result.output


@pytest.mark.parametrize("name", list(HOSTILE))
def test_every_local_reader_refuses_a_hostile_build(out, tmp_path, cli, name):
    m, p, message = hostile(out, name, tmp_path)
    build = local_copy(out, tmp_path / "build", m, p)
    before = tree(tmp_path)
    for args in (("stats", build), ("inspect", build, "--sample", "0")):
        result = cli(*args)
        assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
        assert "refused: " in result.output and "Traceback" not in result.output
    result = cli("verify", build)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert result.output.startswith("problem: ") and "refused: " in result.output
    with pytest.raises(UnsafeBuildError, match=message):
        StreamingMixture(build, cache_dir=tmp_path / "cache")
    assert created_outside(before, tmp_path, tmp_path / "cache") == []


# -- shards that are not what the manifest declares ------------------------------------------
def test_a_decompression_bomb_is_an_error_not_an_out_of_memory(out, s3, tmp_path):  # noqa: F811
    bomb = zstandard.ZstdCompressor().compress(bytes(256 << 20))  # 256 MiB of zeros: ~8 KiB
    m, p = records(out)
    raw = shard(m)["raw_bytes"]
    shard(m).update(sha256=hashlib.sha256(bomb).hexdigest(), bytes=len(bomb))
    name = shard(m)["file"]
    url = publish(s3, out, "bomb", *seal(m, p), [(f"sources/web/train/{name}", bomb)])
    store = StreamingMixture(url, cache_dir=tmp_path / "c")._store("web")
    store._fetch(0)  # downloaded first: the download's own allocations are not measured
    tracemalloc.start()
    try:
        with pytest.raises(OutputError, match=rf"{name}: decompresses to more than {raw:,} bytes"):
            store.tokens(np.arange(3))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # the declared size (a few KiB) and buffers (other threads, a moto server's, count too),
    # never the 256 MiB the shard decompresses to
    assert peak < 32 << 20, peak
    assert not list((tmp_path / "c").rglob("*.blk"))


def test_a_remote_object_larger_than_declared_is_removed(out, s3, tmp_path):  # noqa: F811
    m, p = records(out)
    name = shard(m)["file"]
    body = (out / "sources" / "web" / "train" / name).read_bytes() + bytes(1 << 16)
    url = publish(s3, out, "large", m, p, [(f"sources/web/train/{name}", body)])
    store = StreamingMixture(url, cache_dir=tmp_path / "c")._store("web")
    want = rf"{url}/sources/web/train/{name}: {len(body):,} bytes, more than the [\d,]+ expected"
    with pytest.raises(OutputError, match=want):
        store.tokens(np.arange(3))
    assert not store.download_path(0).exists() and not list((tmp_path / "c").rglob("*.blk"))


def craft(tmp: Path, blocks: np.ndarray, starts: list) -> bytes:
    """One MDS shard of these blocks (written by mixer's own writer: a valid layout)."""
    from mixer.artifacts.shards import ShardWriter

    w = ShardWriter(tmp, seq_len=blocks.shape[1], dtype="uint16", shard_size=1 << 20)
    w.write(Packed(blocks=blocks, starts=starts))
    (rec,) = w.finish()
    return (tmp / rec.file).read_bytes(), rec.raw_bytes


@pytest.mark.parametrize(
    "what,message",
    [
        ("ids", r"token id 9999 is beyond the build's vocabulary of 8,192 ids"),
        ("starts", r"block 0 has invalid document starts"),
    ],
)
def test_a_shard_with_impossible_blocks_is_refused(out, s3, tmp_path, what, message):  # noqa: F811
    m, p = records(out)
    n = shard(m)["samples"]
    blocks = np.ones((n, 16), np.uint16)
    starts = [np.array([0], np.uint32) for _ in range(n)]
    if what == "ids":
        blocks[0, 3] = 9999
    else:
        starts[0] = np.array([4, 40], np.uint32)  # a start past the 16-token block
    body, raw = craft(tmp_path / "craft", blocks, starts)
    shard(m).update(sha256=hashlib.sha256(body).hexdigest(), bytes=len(body), raw_bytes=raw)
    url = publish(s3, out, what, *seal(m, p), [(f"sources/web/train/{shard(m)['file']}", body)])
    with pytest.raises(OutputError, match=message):
        StreamingMixture(url, cache_dir=tmp_path / "c")._store("web").tokens(np.arange(3))
    assert not list((tmp_path / "c").rglob("*.blk"))


def test_the_cache_file_is_created_only_with_room_for_it(out, tmp_path, monkeypatch):
    import mixer.serve.cache_limit

    usage = shutil._ntuple_diskusage(1 << 30, (1 << 30) - 1000, 1000)  # 1,000 bytes free
    monkeypatch.setattr(mixer.serve.cache_limit.shutil, "disk_usage", lambda path: usage)
    ds = StreamingMixture(out, cache_dir=tmp_path / "c")
    with pytest.raises(OutputError, match=r"\(No space left: shard \d+ of sources/\w+/train needs"):
        next(iter(ds))
    assert not [p for p in (tmp_path / "c").rglob("*") if p.is_file() and ".lock" not in p.name]


# -- index.json and reuse --------------------------------------------------------------------
def bad_index(out: Path) -> bytes:
    index = json.loads((out / "sources" / "web" / "train" / "index.json").read_text())
    index["shards"][0]["samples"] += 5
    return json.dumps(index).encode()


def test_an_index_that_disagrees_is_harmless_to_serving(out, s3, tmp_path):  # noqa: F811
    """Serving reads the manifest, never index.json: the same samples as the sound build."""
    m, p = records(out)
    url = publish(s3, out, "index", m, p, [("sources/web/train/index.json", bad_index(out))])
    local = StreamingMixture(out, cache_dir=tmp_path / "l", batch_size=8)
    remote = StreamingMixture(url, cache_dir=tmp_path / "r", batch_size=8)
    for a, b in itertools.islice(zip(local, remote, strict=True), 400):
        assert a["index"] == b["index"] and (a["input_ids"] == b["input_ids"]).all()


def test_verify_reports_an_index_that_disagrees(out, tmp_path, cli):
    build = local_copy(out, tmp_path / "b")
    path = build / "sources" / "web" / "train" / "index.json"
    path.unlink()
    path.write_bytes(bad_index(out))
    result = cli("verify", build)
    assert result.exit_code == 1, result.output
    assert f"problem: {path}: shard.00000.mds.zstd: blocks, sizes or columns differ" in (
        result.output
    )


def reuse_recipe(tmp_path: Path, build: Path, only_reuse: bool = False) -> Path:
    """A recipe reusing the build's web source (and building zh, unless ``only_reuse``)."""
    shutil.copytree(Path(TOKENIZER).parent / "zh", tmp_path / "zh")
    sources = {"replay": {"from": str(build), "source": "web", "weight": 0.1}}
    if not only_reuse:
        sources["zh"] = {"files": "zh/*.parquet", "weight": 1}
    recipe = {
        "seq_len": 16,
        "tokenizer": {"path": str(TOKENIZER)},
        "sources": sources,
        "validation": {"fraction": 0.1},
        "output": "new",
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    return tmp_path / "r.yaml"


def build_cli(cli, recipe: Path):
    return cli("build", recipe, "-w", "1", "--no-progress")


def test_reuse_refuses_an_index_that_disagrees(out, tmp_path, cli):
    build = local_copy(out, tmp_path / "b")
    path = build / "sources" / "web" / "train" / "index.json"
    path.unlink()
    path.write_bytes(bad_index(out))
    result = build_cli(cli, reuse_recipe(tmp_path, build))
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert result.output.startswith("error: ") and "sources.replay.from: " in result.output
    assert "index.json: shard.00000.mds.zstd: blocks, sizes or columns differ" in result.output
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("where", ["extra", "shard", "tokenizer"])
def test_reuse_brings_no_file_from_outside_the_build(out, tmp_path, cli, where):
    """A symbolic link in a reused build (to a private file) is never linked or copied in."""
    secret = tmp_path / "secret.txt"
    secret.write_text("private key\n")
    build = local_copy(out, tmp_path / "b")
    folder = build / "sources" / "web" / "train"
    target = {
        "extra": folder / "notes.txt",
        "shard": folder / "shard.00000.mds.zstd",
        "tokenizer": build / "tokenizer" / "tokenizer.json",
    }[where]
    target.unlink(missing_ok=True)
    target.symlink_to(secret)
    result = build_cli(cli, reuse_recipe(tmp_path, build, where == "tokenizer"))
    copies = [
        p for p in tree(tmp_path / "new") if p.is_file() and "private" in p.read_text("latin1")
    ]
    assert copies == [], copies
    if where == "extra":  # not listed by the manifest: left behind
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
        assert "outside" in result.output and "refused" in result.output


def test_a_hostile_reused_build_is_a_recipe_error(out, tmp_path, cli):
    m, p, _ = hostile(out, "shard-traversal", tmp_path)
    build = local_copy(out, tmp_path / "b", m, p)
    result = build_cli(cli, reuse_recipe(tmp_path, build))
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert "sources.replay.from: " in result.output and "refused: " in result.output


def test_a_sound_build_still_loads_everywhere(out, tmp_path, cli):
    """The checks refuse nothing mixer writes: the build and its copy load, verify, serve."""
    m, p = records(out)
    assert seal(copy.deepcopy(m), copy.deepcopy(p)) == (m, p)
    build = local_copy(out, tmp_path / "b")
    assert cli("verify", build).exit_code == 0
    assert cli("stats", build).exit_code == 0
    assert len(list(StreamingMixture(build, cache_dir=tmp_path / "c"))) == p["total"]


# -- the second guard, where paths are joined ---------------------------------------------
def test_the_name_rule_is_the_recipes():
    from mixer.artifacts import checks
    from mixer.recipe import load

    assert checks.NAME_RE is load.NAME_RE  # one rule (mixer.syntax), not two copies


@pytest.mark.parametrize(
    "rel", ["sources/web/../../../x", "/etc/passwd", "sources//x", "s3://b/x", "a\\..\\x", "."]
)
def test_fetch_refuses_a_path_that_is_not_plain(tmp_path, rel):
    from mixer.artifacts.fetch import fetch

    with pytest.raises(UnsafeBuildError, match="not a plain relative path inside a build"):
        fetch("s3://data/b", rel, tmp_path / "c" / "x", within=tmp_path / "c")
    assert list(tmp_path.iterdir()) == []


def test_fetch_never_downloads_outside_the_cache(tmp_path):
    from mixer.artifacts.fetch import fetch

    dest = tmp_path / "c" / ".." / "PWNED.txt"
    with pytest.raises(UnsafeBuildError, match=r"a download resolves to .*PWNED\.txt, outside"):
        fetch("s3://data/b", "manifest.json", dest, within=tmp_path / "c")
    assert list(tmp_path.iterdir()) == []


def test_a_shard_linked_out_of_a_local_build_is_refused(out, tmp_path, cli):
    build = local_copy(out, tmp_path / "b")
    shard = build / "sources" / "web" / "train" / "shard.00000.mds.zstd"
    elsewhere = tmp_path / "elsewhere.zstd"
    shutil.copyfile(shard, elsewhere)
    shard.unlink()
    shard.symlink_to(elsewhere)  # the very bytes: only the place is wrong
    store = StreamingMixture(build, cache_dir=tmp_path / "c")._store("web")
    with pytest.raises(UnsafeBuildError, match=r"a file of the build resolves to .*, outside"):
        store.tokens(np.arange(3))
    result = cli("verify", build)
    assert result.exit_code == 1 and "elsewhere.zstd, outside" in result.output
