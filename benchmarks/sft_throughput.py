"""Supervised fine-tuning throughput: instructlib.train against transformers.Trainer, in one run.

Same model (TinyGPT's architecture as a GPT2LMHeadModel, same initial weights), same data (the
course's seed tasks and verifiable tasks, rendered with the course tokenizer's chat template as in
chapter 05: 36-256 tokens, so random batches are about half padding), same batch size, same number
of steps (one epoch), same masked loss, same optimizer and schedule. The Trainer gets its defaults
(random batches padded to their longest example); instructlib.train packs examples into rows
(or groups them by length) and has no per-step overhead beyond the maths.

    python benchmarks/sft_throughput.py [--mode packing|group_by_length] [--repeats 2] [--device cpu|cuda]

Prints real (non-padding) tokens per second of both, their ratio, and both final losses (the mean
training loss of the last 10 steps and the validation loss of the final weights).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

import transformers

from instructlib.config import get_device, set_seed
from instructlib.data.collate import DataCollatorForInstructions, encode_dataset
from instructlib.data.io import load_records
from instructlib.data.verifiable import make_records
from instructlib.models import load_tokenizer
from instructlib.nn.gpt import GPTConfig, TinyGPT
from instructlib.train import TrainConfig, evaluate, train

SEED_TASKS = Path(__file__).resolve().parent.parent / "instructlib/data/seed_tasks/seed_tasks.jsonl"
MAX_LENGTH = 256


def make_model(vocab_size: int):
    """A fresh TinyGPT (the cpu profile's shape, 256 positions) exported to transformers."""
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=vocab_size, block_size=MAX_LENGTH, n_layer=4, n_head=4, n_embd=128)
    return TinyGPT(config).to_hf()


def run_trainer(model, data, collate, args, device) -> tuple[float, list[float]]:
    """transformers.Trainer with matching hyper-parameters; (seconds, per-step losses)."""
    from transformers import PrinterCallback, Trainer, TrainingArguments

    steps = len(data) // args.batch_size * args.epochs
    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(
            output_dir=out, per_device_train_batch_size=args.batch_size, max_steps=steps,
            learning_rate=args.lr, lr_scheduler_type="cosine", warmup_steps=args.warmup, weight_decay=0.0,
            max_grad_norm=1.0, logging_steps=1, log_level="error", save_strategy="no", report_to=[], disable_tqdm=True,
            dataloader_drop_last=True, seed=0, use_cpu=device.type == "cpu",
            bf16=args.precision == "bf16", fp16=args.precision == "fp16", remove_unused_columns=False)
        trainer = Trainer(model=model, args=targs, train_dataset=data, data_collator=collate)
        trainer.remove_callback(PrinterCallback)  # it prints every log dict when tqdm is off
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    return seconds, [log["loss"] for log in trainer.state.log_history if "loss" in log]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--examples", type=int, default=256, help="training examples (one epoch = examples / batch steps)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--mode", default="packing", choices=["packing", "group_by_length"])
    parser.add_argument("--device", default=str(get_device()))
    parser.add_argument("--repeats", type=int, default=2, help="runs of each; the best time counts")
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()
    device = torch.device(args.device)

    tokenizer = load_tokenizer("tinygpt")
    records = load_records(SEED_TASKS) + make_records("train", 30)
    records = [records[i] for i in torch.randperm(len(records), generator=torch.Generator().manual_seed(0))]
    data, _ = encode_dataset(records, tokenizer, MAX_LENGTH, "chat")
    val, _ = encode_dataset(make_records("validation", 5), tokenizer, MAX_LENGTH, "chat")
    data = data[: min(args.examples, len(data)) // args.batch_size * args.batch_size]  # whole batches: both see every example once
    lengths = [len(e["input_ids"]) for e in data]
    tokens = sum(lengths) * args.epochs
    padded = DataCollatorForInstructions(tokenizer)
    print(f"data: {len(data)} examples, {min(lengths)}-{max(lengths)} tokens (mean {tokens / len(data) / args.epochs:.0f}), "
          f"batch {args.batch_size}, {len(data) // args.batch_size * args.epochs} steps, {device}, {args.precision}")

    collate = DataCollatorForInstructions(tokenizer, packing=True, max_length=MAX_LENGTH) \
        if args.mode == "packing" else padded
    config = TrainConfig(max_steps=len(data) // args.batch_size * args.epochs, batch_size=args.batch_size,
                         lr=args.lr, warmup_steps=args.warmup, precision=args.precision,
                         group_by_length=args.mode == "group_by_length", progress=False)
    trainer_seconds = ours_seconds = float("inf")
    for _ in range(args.repeats):  # alternate the two and keep each one's best time: less noise from other load
        set_seed(0)
        model = make_model(len(tokenizer))
        seconds, trainer_losses = run_trainer(model, data, padded, args, device)
        trainer_seconds = min(trainer_seconds, seconds)
        trainer_val = evaluate(model, val, padded, device=device)

        set_seed(0)
        model = make_model(len(tokenizer))
        start = time.perf_counter()
        result = train(model, data, collate, config, device=device)
        ours_seconds = min(ours_seconds, time.perf_counter() - start)
        ours_losses = [r["loss"] for r in result.history.train]
        ours_val = evaluate(model, val, padded, device=device)

    ours_tps, trainer_tps = tokens / ours_seconds, tokens / trainer_seconds
    tail = lambda xs: sum(xs[-10:]) / len(xs[-10:])  # noqa: E731
    print(f"{'':<36}{'tokens/s':>10}{'train loss (last 10)':>22}{'val loss':>10}")
    print(f"{'transformers.Trainer':<36}{trainer_tps:>10.0f}{tail(trainer_losses):>22.4f}{trainer_val:>10.4f}")
    print(f"{'instructlib.train (' + args.mode + ')':<36}{ours_tps:>10.0f}{tail(ours_losses):>22.4f}{ours_val:>10.4f}")
    print(f"ratio instructlib/Trainer: {ours_tps / trainer_tps:.2f}x tokens/s")


if __name__ == "__main__":
    main()
