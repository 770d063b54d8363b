"""Llama-2 Chinese continued pre-training with English replay, through ``MixerTrainer``.

``recipes/llama2-chinese-replay.yaml`` builds Chinese web text (90%) and English replay (10%)
tokenized with Chinese-LLaMA-2's tokenizer (55,296 ids: Llama-2's 32,000 + 23,296 Chinese).
This script trains Llama-2 on it the way Chinese-LLaMA-Alpaca-2 does
(``scripts/training/run_clm_pt_with_peft.py``): the embeddings grown to the new vocabulary,
optionally LoRA on every projection with ``embed_tokens`` and ``lm_head`` trained in full (the
new Chinese rows start untrained), and it reports the held-out loss per source: Chinese going
down, English replay not going up (the signal that shows forgetting).

    mixer build recipes/llama2-chinese-replay.yaml
    torchrun --nproc-per-node 8 examples/hf_chinese_replay.py \\
        --model meta-llama/Llama-2-7b-hf --build out/llama2-chinese-replay --output runs/zh \\
        --lora-r 64 --lora-alpha 128 --batch-size 4 --grad-accum 8 --bf16

Every rank reads its own slice of the plan; ``--resume`` continues from the last checkpoint in
``--output`` without re-reading anything. ``--config tiny.json`` starts from a random model
of that config instead of ``--model`` (the tests run it on the demo build).
"""

from __future__ import annotations

import argparse
import json
import os

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "down_proj", "up_proj"]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="a pretrained model: hub name or folder")
    which.add_argument("--config", help="a model config (JSON): random weights, for trials")
    p.add_argument("--build", required=True, help="the output folder of `mixer build`")
    p.add_argument("--output", required=True, help="checkpoints and logs")
    p.add_argument("--batch-size", type=int, default=4, help="per device")
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=-1, help="default: the whole plan once")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--warmup", type=float, default=0.05, help="share of the steps")
    p.add_argument("--lora-r", type=int, default=0, help="LoRA rank; 0: train every weight")
    p.add_argument("--lora-alpha", type=float, default=128.0)
    p.add_argument("--lora-dropout", type=float, default=0.05)
    p.add_argument("--eval-steps", type=int, default=500)
    p.add_argument("--save-steps", type=int, default=500)
    p.add_argument("--logging-steps", type=int, default=10)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--resume", action="store_true", help="from the last checkpoint in --output")
    return p.parse_args(argv)


def load_model(opts: argparse.Namespace, vocab_size: int):
    from transformers import AutoConfig, AutoModelForCausalLM

    if opts.config:
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(opts.config))
    else:
        model = AutoModelForCausalLM.from_pretrained(opts.model)
    if model.get_input_embeddings().num_embeddings < vocab_size:
        # Chinese-LLaMA-2's tokenizer extends Llama-2's: grow the embeddings to it, as
        # Chinese-LLaMA-Alpaca-2 does (the first 32,000 rows keep their weights)
        print(f"resizing the embeddings to the build's vocabulary: {vocab_size:,}")
        model.resize_token_embeddings(vocab_size)
    if opts.lora_r:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            task_type="CAUSAL_LM",
            r=opts.lora_r,
            lora_alpha=opts.lora_alpha,
            lora_dropout=opts.lora_dropout,
            target_modules=LORA_TARGETS,
            modules_to_save=["embed_tokens", "lm_head"],
        )
        model = get_peft_model(model, lora)
        model.print_trainable_parameters()
    return model


def main(argv: list[str] | None = None) -> dict:
    from transformers import TrainingArguments
    from transformers.trainer_utils import get_last_checkpoint

    from mixer import StreamingMixture
    from mixer.integrations.hf import MixerTrainer

    opts = parse(argv)
    vocab = StreamingMixture(opts.build).manifest.tokenizer.vocab_size
    model = load_model(opts, vocab)
    args = TrainingArguments(
        opts.output,
        per_device_train_batch_size=opts.batch_size,
        per_device_eval_batch_size=opts.batch_size,
        gradient_accumulation_steps=opts.grad_accum,
        max_steps=opts.max_steps,
        learning_rate=opts.lr,
        lr_scheduler_type="cosine",
        logging_steps=opts.logging_steps,
        eval_strategy="steps",
        eval_steps=opts.eval_steps,
        save_steps=opts.save_steps,
        bf16=opts.bf16,
        report_to=[],
    )
    # eval_dataset: the build's path gives one held-out set per source (eval_zh_loss, ...)
    trainer = MixerTrainer(model, args, train_dataset=opts.build, eval_dataset=opts.build)
    trainer.args.warmup_steps = int(opts.warmup * trainer.args.max_steps)  # max_steps: the plan's
    last = get_last_checkpoint(opts.output) if opts.resume and os.path.isdir(opts.output) else None
    trainer.train(resume_from_checkpoint=last)
    trainer.save_model()
    metrics = trainer.evaluate()
    if trainer.is_world_process_zero():
        print(json.dumps({k: v for k, v in metrics.items() if k.endswith("_loss")}, indent=2))
    return metrics


if __name__ == "__main__":
    main()
