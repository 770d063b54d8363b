"""MixerData's loaders and checks, in-process (litgpt itself is needed only for the class
litgpt's command line accepts; its methods are plain Python: ``_MixerData``)."""

from __future__ import annotations

import importlib.util
import itertools

import pytest
import torch

from mixer import MixerLoader, StreamingMixture
from mixer.errors import OutputError, TrainerError
from mixer.integrations import litgpt as integration
from tests.helpers import build_demo

B = 4


def data(path, max_seq_length=16, **kw):
    d = integration._MixerData(str(path), **kw)
    d.connect(tokenizer=None, batch_size=B, max_seq_length=max_seq_length)
    d.setup()
    return d


def test_train_batches_are_the_plans_token_rows(small_build, cache):
    loader = data(small_build, cache_dir=str(cache)).train_dataloader()
    assert isinstance(loader, MixerLoader) and loader.state_dict()["samples_seen"] == 0
    batches = list(itertools.islice(loader, 3))
    plan = list(itertools.islice(StreamingMixture(small_build, batch_size=B, cache_dir=cache), 12))
    assert all(b.dtype == torch.int64 and b.shape == (B, 17) for b in batches)
    assert torch.cat(batches).tolist() == [x["input_ids"].tolist() for x in plan]
    assert loader.state_dict()["samples_seen"] == 12


def test_validation_of_one_source(small_build, cache):
    loader = data(small_build, val_source="zh", cache_dir=str(cache)).val_dataloader()
    rows = torch.cat(list(loader)).tolist()
    held_out = StreamingMixture(small_build, "val", source="zh", cache_dir=cache)
    assert rows == [x["input_ids"].tolist() for x in held_out] and rows
    assert torch.cat(list(loader)).tolist() == rows  # every evaluation: the same blocks


def test_seq_len_must_be_max_seq_length_plus_one(small_build, cache):
    with pytest.raises(  # rows longer than the model's window: rebuild first
        TrainerError,
        match=r"seq_len=17 tokens, but litgpt trains on max_seq_length \+ 1 = 9 .*: build with"
        r" seq_len: 9 in the recipe, or run litgpt with --train.max_seq_length 16 if the model's"
        r" block_size allows it$",
    ):
        data(small_build, max_seq_length=8, cache_dir=str(cache)).train_dataloader()
    with pytest.raises(  # shorter rows: a shorter window always fits the model
        TrainerError,
        match=r"max_seq_length \+ 1 = 33 .*: run litgpt with --train.max_seq_length 16, or build",
    ):
        data(small_build, max_seq_length=32, cache_dir=str(cache)).val_dataloader()
    integration.check_seq_len("out", 17, 16)
    integration.check_seq_len("out", 17, None)  # not connected: nothing to compare with


def test_validation_needs_held_out_blocks(tmp_path, small_build, monkeypatch):
    no_val = build_demo(tmp_path, {"zh": 1.0}, seq_len=17, validation={})
    with pytest.raises(OutputError, match=r"no validation blocks"):
        data(no_val, cache_dir=str(tmp_path / "c")).val_dataloader()
    monkeypatch.setenv("RANK", "9999")
    monkeypatch.setenv("WORLD_SIZE", "10000")  # more ranks than held-out blocks
    with pytest.raises(TrainerError, match=r"no validation block for this rank .*for 10000 ranks"):
        data(small_build, cache_dir=str(tmp_path / "c")).val_dataloader()


def test_printing_the_module_opens_nothing():
    # litgpt str()s its data module while parsing the command line, before any launch
    assert str(integration._MixerData("s3://nowhere/out")) == (
        "MixerData(path='s3://nowhere/out', val_source=None)"
    )


@pytest.mark.skipif(importlib.util.find_spec("litgpt") is not None, reason="litgpt is installed")
def test_without_litgpt_the_class_says_what_to_install():
    with pytest.raises(ImportError, match=r"needs litgpt .*pip install 'mixer\[litgpt\]'"):
        integration.MixerData  # noqa: B018


def test_a_best_fit_build_is_refused(tmp_path):
    """litgpt pretrain would train on the padding of every block: refused in one line."""
    out = build_demo(tmp_path, {"web": 1.0}, seq_len=17, packing="bestfit")
    with pytest.raises(TrainerError, match=r"sources web are best-fit packed .* `packing: concat`"):
        data(out, cache_dir=str(tmp_path / "cache")).train_dataloader()
