"""Chapter 05: run the fine-tuning loop from the command line, on one process or many.

    python -m instructlib.train --steps 20
    torchrun --nproc_per_node 2 -m instructlib.train --steps 20     # DistributedDataParallel

``--batch-size`` is per process: 2 processes with 4 each see the same global batch as 1 with 8.
``--model tiny-random`` (a 2-layer GPT-2 on random token data) needs no download and no tokenizer.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
import torch.distributed as dist

from ..config import set_seed
from ..data.io import atomic_write_text
from .loop import TrainConfig, train


def tiny_random_setup(n_examples: int = 64, vocab: int = 64, seed: int = 0):
    """A tiny GPT-2 (no dropout) and random prompt/response examples: the loop's test bench."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_positions=64, n_embd=32, n_layer=2, n_head=2,
                                       resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                       bos_token_id=0, eos_token_id=0, pad_token_id=0))
    g = torch.Generator().manual_seed(seed)
    examples = []
    for _ in range(n_examples):
        n = int(torch.randint(6, 30, (1,), generator=g))
        p = int(torch.randint(2, n - 2, (1,), generator=g))
        ids = torch.randint(3, vocab, (n,), generator=g).tolist()
        examples.append({"input_ids": ids, "labels": [-100] * p + ids[p:]})
    return model, examples


def init_distributed() -> bool:
    """Join the process group torchrun describes (gloo on CPU, nccl on GPU); False when not launched so."""
    if "RANK" not in os.environ or dist.is_initialized():
        return dist.is_initialized()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend)
    return True


def main(argv: list[str] | None = None) -> int:
    from ..data.collate import DataCollatorForInstructions

    parser = argparse.ArgumentParser(prog="python -m instructlib.train", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-random", help="only tiny-random for now")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=4, help="examples per micro-batch per process")
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, help="write the per-step losses here (JSON, rank 0)")
    args = parser.parse_args(argv)
    if args.model != "tiny-random":
        parser.error("only --model tiny-random is available from the command line (see notebook 05)")
    distributed = init_distributed()
    set_seed(0)
    model, examples = tiny_random_setup()
    config = TrainConfig(max_steps=args.steps, batch_size=args.batch_size, grad_accum=args.grad_accum,
                         lr=args.lr, warmup_steps=2, progress=False)
    result = train(model, examples, DataCollatorForInstructions(pad_token_id=0), config, device=args.device)
    rank = dist.get_rank() if distributed else 0
    if rank == 0:
        losses = [r["loss"] for r in result.history.train]
        print(f"world={dist.get_world_size() if distributed else 1} steps={result.step} "
              f"first loss={losses[0]:.4f} last loss={losses[-1]:.4f}")
        if args.out:
            atomic_write_text(args.out, [json.dumps({"losses": losses})])
    if distributed:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
