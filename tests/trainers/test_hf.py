"""MixerTrainer and MixerCollator with a real transformers Trainer (one process, CPU, fp32).

Which plan samples the model received is recorded in ``forward`` (``Recording``); two
processes are in test_hf_ddp.py. Runs under transformers 5.x and 4.57.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from mixer import StreamingMixture
from mixer.errors import StateError, TrainerError
from mixer.integrations.hf import MixerCollator, check_vocabulary, packed_attention
from tests.helpers import REPO, build_demo

transformers = pytest.importorskip("transformers")
from transformers import LlamaConfig, LlamaForCausalLM, TrainingArguments  # noqa: E402

from mixer.integrations.hf import MixerTrainer  # noqa: E402

B = 4


class Recording(LlamaForCausalLM):
    """Records the plan indices (and the loss) of every batch its forward receives."""

    def forward(self, index=None, **kwargs):
        out = super().forward(**kwargs)
        self.seen.append(None if index is None else index.tolist())
        self.losses.append(None if out.loss is None else out.loss.item())
        return out


def tiny_llama(vocab: int = 8192, attn: str = "sdpa", cls=Recording):
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        attn_implementation=attn,
    )
    model = cls(config)
    model.seen, model.losses = [], []
    return model


def hf_args(path, **kw) -> TrainingArguments:
    kw = {"per_device_train_batch_size": B, "per_device_eval_batch_size": 8, "use_cpu": True, **kw}
    return TrainingArguments(str(path), report_to=[], disable_tqdm=True, learning_rate=1e-3, **kw)


def small_build(root):
    """Two sources, padded tails (remainder: pad), a plan of 400 samples of 32 tokens; the
    serving cache beside it ($MIXER_CACHE, also for the processes a test starts)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MIXER_CACHE", str(root / "cache"))
        yield build_demo(
            root,
            {"web": 0.7, "zh": 0.3},
            seq_len=32,
            remainder="pad",
            validation={"fraction": 0.03},
            mixture={"samples": 400},
        )


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    yield from small_build(tmp_path_factory.mktemp("hf"))


def flat(batches: list[list[int]]) -> list[int]:
    return [i for b in batches for i in b]


# -- order and resume -----------------------------------------------------------------------
@pytest.mark.parametrize(("accumulation", "workers"), [(1, 0), (2, 2)])
def test_first_steps_train_the_plan_in_order(out, tmp_path, accumulation, workers):
    model = tiny_llama()
    args = hf_args(
        tmp_path, gradient_accumulation_steps=accumulation, max_steps=3, save_strategy="no"
    )
    args.dataloader_num_workers = workers
    trainer = MixerTrainer(
        model, args, data_collator=MixerCollator(keep_index=True), train_dataset=str(out)
    )
    trainer.train()
    n = 3 * B * accumulation
    assert model.seen == [list(range(a, a + B)) for a in range(0, n, B)]


@pytest.mark.slow
def test_resume_is_exact_and_reads_nothing_twice(out, tmp_path):
    def trainer(model, dataset, **kw):
        args = hf_args(
            tmp_path,
            gradient_accumulation_steps=2,
            max_steps=4,
            save_steps=2,
            logging_steps=1,
            **kw,
        )
        return MixerTrainer(
            model, args, data_collator=MixerCollator(keep_index=True), train_dataset=dataset
        )

    whole = tiny_llama()
    trainer(whole, str(out)).train()
    ckpt = tmp_path / "checkpoint-2"
    saved = json.loads((ckpt / "trainer_state.json").read_text())["stateful_callbacks"]
    assert saved["MixerProgress"]["attributes"]["samples_seen"] == 2 * 2 * B

    resumed, dataset = tiny_llama(), Counting(out, batch_size=B)
    run = trainer(resumed, dataset)
    run.train(resume_from_checkpoint=str(ckpt))
    assert dataset.read == list(range(16, 32))  # O(1): nothing before sample 16 is read
    assert resumed.seen == whole.seen[4:]
    assert resumed.losses == pytest.approx(whole.losses[4:], rel=1e-6, abs=0)
    assert [h["epoch"] for h in run.state.log_history if "loss" in h] == [0.25, 0.5, 0.75, 1.0]

    again, dataset = tiny_llama(), Counting(out, batch_size=B)
    trainer(again, dataset, ignore_data_skip=True).train(resume_from_checkpoint=str(ckpt))
    assert flat(again.seen) == list(range(16))  # HF's meaning: the data restarts at sample 0

    state = json.loads((ckpt / "trainer_state.json").read_text())
    state["stateful_callbacks"]["MixerProgress"]["attributes"]["plan"] = "0" * 64
    (ckpt / "trainer_state.json").write_text(json.dumps(state))
    other = r"checkpoint at step 2: this state is from another plan \(000000"
    with pytest.raises(StateError, match=other):
        trainer(tiny_llama(), str(out)).train(resume_from_checkpoint=str(ckpt))
    del state["stateful_callbacks"]["MixerProgress"]
    (ckpt / "trainer_state.json").write_text(json.dumps(state))
    with pytest.raises(StateError, match="checkpoint at step 2 holds no mixer position"):
        trainer(tiny_llama(), str(out)).train(resume_from_checkpoint=str(ckpt))


class Counting(StreamingMixture):
    """Records the index of every sample the dataset hands out."""

    def __iter__(self):
        self.read = getattr(self, "read", [])
        for sample in super().__iter__():
            self.read.append(sample["index"])
            yield sample


def test_the_plan_bounds_max_steps(out, tmp_path):
    trainer = MixerTrainer(tiny_llama(), hf_args(tmp_path), train_dataset=str(out))
    assert trainer.args.max_steps == 400 // B  # default: the whole plan once, no second pass
    with pytest.raises(TrainerError, match=r"max_steps=101: 101 optimizer steps of 4 samples.*"):
        MixerTrainer(tiny_llama(), hf_args(tmp_path, max_steps=101), train_dataset=str(out))
    too_big = hf_args(tmp_path, per_device_train_batch_size=512)
    with pytest.raises(TrainerError, match="do not fill one optimizer step of 512"):
        MixerTrainer(tiny_llama(), too_big, train_dataset=str(out))
    wrong = StreamingMixture(out, batch_size=8)
    with pytest.raises(TrainerError, match=r"\(batch_size, rank, world_size\) = \(8, 0, 1\)"):
        MixerTrainer(tiny_llama(), hf_args(tmp_path), train_dataset=wrong)


def test_a_vocabulary_larger_than_the_model_is_refused(out, tmp_path):
    with pytest.raises(TrainerError, match=r"has 8,192 ids .* embedding has 4,096 rows"):
        MixerTrainer(tiny_llama(vocab=4096), hf_args(tmp_path), train_dataset=str(out))
    check_vocabulary(tiny_llama(vocab=8192), 8192, "out")  # equal sizes are fine
    check_vocabulary(tiny_llama(vocab=8192), 100, "out")


class _FlashModel(torch.nn.Module):
    """Just enough of a flash-attention model for MixerTrainer's checks, which come first."""

    def __init__(self):
        super().__init__()
        self.config = LlamaConfig(vocab_size=8192)
        self.config._attn_implementation_internal = "flash_attention_2"
        self.embed = torch.nn.Embedding(8192, 2)

    def get_input_embeddings(self):
        return self.embed


def test_settings_that_would_break_the_order_are_refused(out, tmp_path):
    model = tiny_llama()
    with pytest.raises(TrainerError, match="auto_find_batch_size=True: the batch size fixes"):
        MixerTrainer(model, hf_args(tmp_path, auto_find_batch_size=True), train_dataset=str(out))
    split = hf_args(tmp_path, accelerator_config={"split_batches": True})
    with pytest.raises(TrainerError, match="split_batches=True: MixerTrainer gives each rank"):
        MixerTrainer(model, split, train_dataset=str(out))
    with pytest.raises(TrainerError, match="takes a build's output path or a StreamingMixture"):
        MixerTrainer(model, hf_args(tmp_path), train_dataset=[1, 2])
    with pytest.raises(TrainerError, match="MixerTrainer.train: no train_dataset"):
        MixerTrainer(model, hf_args(tmp_path)).train()
    flash = _FlashModel()
    with pytest.raises(TrainerError, match=r"flash attention.*use MixerCollator\(flatten=True\)"):
        MixerTrainer(flash, hf_args(tmp_path), MixerCollator(), train_dataset=str(out))
    assert flash.config.use_cache is False  # packed_attention ran on it


# -- evaluation -----------------------------------------------------------------------------
@pytest.mark.slow
def test_eval_per_source_scores_every_val_sample_once(out, tmp_path):
    model = tiny_llama()
    args = hf_args(tmp_path)
    trainer = MixerTrainer(
        model, args, MixerCollator(keep_index=True), train_dataset=str(out), eval_dataset=str(out)
    )
    metrics = trainer.evaluate()
    seen = [i for b in model.seen for i in b if i >= 0]  # -1: blank rows of a short batch
    again = trainer.evaluate()
    assert again["eval_web_loss"] == metrics["eval_web_loss"]
    expected = []
    for source in ("web", "zh"):
        ds = StreamingMixture(out, "val", source=source)
        expected += list(range(ds.total_samples))
        nll, tokens, samples = 0.0, 0, list(ds)
        for a in range(0, len(samples), 8):  # the same loss, computed by hand
            batch = MixerCollator()(samples[a : a + 8])
            with torch.no_grad():
                logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
            target = batch["labels"][:, 1:]
            nll += torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, 8192), target.reshape(-1), reduction="sum"
            ).item()
            tokens += int((target != -100).sum())
        assert metrics[f"eval_{source}_loss"] == pytest.approx(nll / tokens, rel=1e-5)
    assert sorted(seen) == sorted(expected) and len(seen) == len(expected)


# -- the stock Trainer ----------------------------------------------------------------------
def test_stock_trainer_with_mixer_collator(out, tmp_path):
    ds = StreamingMixture(out, batch_size=B, rank=0, world_size=1)
    model = tiny_llama()
    collate = MixerCollator(keep_index=True)
    args = hf_args(tmp_path, max_steps=2, save_strategy="no", remove_unused_columns=False)
    transformers.Trainer(model, args, data_collator=collate, train_dataset=ds).train()
    assert flat(model.seen) == list(range(2 * B))
    with pytest.raises(TrainerError, match="remove_unused_columns=False"):
        args = hf_args(tmp_path, max_steps=2, save_strategy="no")
        plain = tiny_llama(cls=LlamaForCausalLM)  # its forward takes no `index`: removed
        transformers.Trainer(plain, args, data_collator=collate, train_dataset=ds).train()


# -- collation ------------------------------------------------------------------------------
def sample(ids, positions=None, padding=0, index=0) -> dict:
    s = {"input_ids": np.array(ids, np.int64), "source": "web", "index": index}
    if positions is not None:
        s["position_ids"] = np.array(positions, np.int64)
    if padding:
        s["num_padding"] = padding
    return s


def test_collator_labels_padding_and_flattening():
    rows = [
        sample([5, 6, 0, 7, 8, 0], [0, 1, 2, 0, 1, 2], index=10),
        sample([9, 0, 3, 0, 0, 0], [0, 1, 0, 1, 2, 3], padding=3, index=11),
    ]
    batch = MixerCollator()(rows)
    assert set(batch) == {"input_ids", "position_ids", "labels"}  # no attention_mask, no source
    assert all(v.dtype == torch.int64 for v in batch.values())
    assert batch["labels"].tolist() == [[-100, 6, 0, 7, 8, 0], [-100, 0, 3, -100, -100, -100]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1, 2], [0, 1, 0, 1, 2, 3]]

    flat_batch = MixerCollator(flatten=True, keep_index=True)(rows)
    assert flat_batch["input_ids"].tolist() == [[5, 6, 0, 7, 8, 0, 9, 0, 3, 0, 0, 0]]
    assert flat_batch["position_ids"].tolist() == [[0, 1, 2, 0, 1, 2, 0, 1, 0, 1, 2, 3]]
    assert flat_batch["labels"].tolist() == [batch["labels"].reshape(-1).tolist()]
    assert flat_batch["index"].tolist() == [10, 11]

    with pytest.raises(TrainerError, match="remove_unused_columns=False"):
        MixerCollator()([{"input_ids": np.zeros(4, np.int64)}])
    with pytest.raises(TrainerError, match="flatten=True. needs position ids"):
        MixerCollator(flatten=True)([sample([1, 2])])


def test_padding_comes_from_the_dataset(out):
    """Only each source's last (padded) block has num_padding, with the manifest's count."""
    manifest = json.loads((out / "manifest.json").read_text())
    padded = {}
    for x in StreamingMixture(out, "val"):
        if x["num_padding"]:
            padded[x["source"]] = x["num_padding"]
            labels = MixerCollator()([x])["labels"][0]
            assert (labels[32 - x["num_padding"] :] == -100).all()
            assert (labels[1 : 32 - x["num_padding"]] >= 0).all()
    want = {n: s["val"]["padding_tokens"] for n, s in manifest["sources"].items()}
    assert padded == {n: p for n, p in want.items() if p} and padded


# -- attention ------------------------------------------------------------------------------
def two_documents(out) -> tuple[dict, int, int]:
    """A real sample whose block holds a whole second document [s, e)."""
    for x in StreamingMixture(out, "val"):
        starts = np.flatnonzero(x["position_ids"] == 0)
        if len(starts) >= 3 and starts[2] - starts[1] >= 4:
            return x, int(starts[1]), int(starts[2])
    raise AssertionError("no block with two documents")


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_documents_do_not_attend_to_each_other(out, tmp_path, attn):
    trainer = MixerTrainer(tiny_llama(attn=attn), hf_args(tmp_path), train_dataset=str(out))
    model, x = trainer.model.eval(), None
    x, s, e = two_documents(out)
    batch = trainer.data_collator([x])
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits
        alone = model(
            input_ids=batch["input_ids"][:, s:e], position_ids=torch.arange(e - s)[None]
        ).logits
        # what DataCollatorForLanguageModeling adds: an all-ones mask lets documents mix
        mixed = model(
            **{k: batch[k] for k in ("input_ids", "position_ids")},
            attention_mask=torch.ones_like(batch["input_ids"]),
        ).logits
    torch.testing.assert_close(packed[:, s:e], alone, atol=1e-4, rtol=0)
    assert (mixed[:, s:e] - alone).abs().max() > 1e-3


def test_flattened_batches_give_the_same_logits_and_loss(out, tmp_path):
    """sdpa on CPU separates documents in a [1, B*L] row by its position ids, as flash-attn
    varlen does: the flattened batch must be the same computation as the [B, L] one."""
    model = tiny_llama().eval()
    assert not packed_attention(model)  # no flash attention: [B, L] rows would do
    samples = [x for _, x in zip(range(3), StreamingMixture(out, batch_size=3), strict=False)]
    rows, flattened = MixerCollator()(samples), MixerCollator(flatten=True)(samples)
    assert flattened["input_ids"].shape == (1, 3 * 32)
    with torch.no_grad():
        a, b = model(**rows), model(**flattened)
    torch.testing.assert_close(b.logits.reshape(3, 32, -1), a.logits, atol=1e-4, rtol=0)
    torch.testing.assert_close(b.loss, a.loss, atol=1e-5, rtol=0)


def _flash_ready() -> bool:
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.mark.skipif(not _flash_ready(), reason="needs flash-attn and a CUDA GPU")
def test_flash_attention_2_keeps_documents_apart(out, tmp_path):
    model = tiny_llama(attn="flash_attention_2").to("cuda", torch.bfloat16)
    trainer = MixerTrainer(model, hf_args(tmp_path, use_cpu=False), train_dataset=str(out))
    assert trainer.data_collator.flatten  # chosen for flash attention
    x, s, e = two_documents(out)
    batch = {k: v.cuda() for k, v in trainer.data_collator([x, x]).items()}
    with torch.no_grad():
        packed = trainer.model(input_ids=batch["input_ids"], position_ids=batch["position_ids"])
        alone = trainer.model(
            input_ids=batch["input_ids"][:, s:e], position_ids=torch.arange(e - s)[None].cuda()
        )
    torch.testing.assert_close(
        packed.logits[:, s:e].float(), alone.logits.float(), atol=2e-2, rtol=0
    )


def test_importing_the_module_does_not_import_transformers():
    code = "import sys, mixer, mixer.integrations.hf; print('transformers' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.stdout.strip() == "False", done.stderr


def test_bestfit_padding_is_never_scored(tmp_path):
    """A best-fit build pads most blocks: the loss MixerCollator's labels give is the mean
    over real next-token predictions only, computed here from the logits by hand, and it is
    not the loss with the padding scored."""
    out = build_demo(
        tmp_path, {"web": 0.5, "zh": 0.5}, seq_len=32, packing="bestfit", mixture={"samples": 8}
    )
    samples = list(StreamingMixture(out, cache_dir=tmp_path / "cache"))
    pads = [x["num_padding"] for x in samples]
    assert any(pads)
    batch = MixerCollator()(samples)
    model = tiny_llama().eval()
    with torch.no_grad():
        out_ = model(**batch)
    logits = out_.logits.float()
    losses = []
    for row, pad in enumerate(pads):
        real = 32 - pad  # predictions t -> t + 1 inside the real tokens only
        ids = batch["input_ids"][row]
        losses.append(
            torch.nn.functional.cross_entropy(
                logits[row, : real - 1], ids[1:real], reduction="none"
            )
        )
    want = torch.cat(losses).mean()
    torch.testing.assert_close(out_.loss, want, atol=1e-5, rtol=1e-5)
    scored_all = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), batch["input_ids"][:, 1:].reshape(-1)
    )
    assert abs(scored_all.item() - want.item()) > 1e-4  # the padding would change it
