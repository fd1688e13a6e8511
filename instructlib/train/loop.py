"""Chapter 05: the supervised fine-tuning loop — plain PyTorch in one file, read it top to bottom.

One optimizer step = ``grad_accum`` micro-batches of ``batch_size`` examples on each of
``world_size`` processes. The loss is the mean cross-entropy over every *learned* token of that
global batch (labels != -100), so gradient accumulation, padding, packing and the number of
processes never change what is optimised. The batch order is a pure function of (seed, epoch), so
a checkpoint only needs the step number to know where the data stream stands.

Works for any model called as ``model(input_ids=..., attention_mask=...)`` that returns logits or
an output with ``.logits``: the course TinyGPT, transformers causal LMs and peft models.
"""
from __future__ import annotations

import math
import os
import random
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from ..config import CPU_THREADS, autocast_dtype, cpu_threads, get_device, needs_grad_scaler
from ..files import atomic_torch_save
from ..data.collate import IGNORE_INDEX, length_grouped_batches
from ..lm.metrics import causal_lm_loss
from ..models.llm import is_transformers_model  
from ..nn.optim import History, make_optimizer, warmup_cosine


@dataclass
class TrainConfig:
    """Hyper-parameters of a run (sizes per process; the global batch is batch_size*grad_accum*world)."""

    max_steps: int = 100             # optimizer steps; the schedule spans them
    batch_size: int = 8              # examples per micro-batch per process
    grad_accum: int = 1              # micro-batches per optimizer step
    lr: float = 3e-4
    weight_decay: float = 0.0        # applied to matrices only, never to biases and norms
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0        # cosine decays to lr * min_lr_ratio
    max_grad_norm: Optional[float] = 1.0
    precision: str = "auto"          # auto (bf16 / fp16+scaler / fp32 by hardware), fp32, bf16, fp16
    gradient_checkpointing: bool = False
    group_by_length: bool = False
    eval_every: int = 0              # 0: only at the start and the end
    patience: Optional[int] = None   # early stopping: evaluations without improvement
    restore_best: bool = True        # after early stopping, go back to the best weights
    load_best_at_end: bool = False   # always end on the best validation weights (Trainer's load_best_model_at_end)
    checkpoint_dir: Optional[str] = None
    save_every: int = 0              # 0: save only at the end (when checkpoint_dir is set)
    stop_at: Optional[int] = None    # end after this step as if interrupted (the schedule still spans max_steps)
    seed: int = 0
    threads: Optional[int] = CPU_THREADS  # torch's CPU threads during the run (config.CPU_THREADS); None: leave as is
    progress: bool = True


@dataclass
class TrainResult:
    """What ``train`` returns."""

    history: History
    step: int
    best_val_loss: Optional[float]
    stopped_early: bool
    tokens: int                      # real (non-padding) tokens processed, all processes
    seconds: float                   # training time without evaluation
    peak_memory_mb: Optional[float]  # CUDA peak allocated memory, None on CPU
    best_step: Optional[int] = None  # step of the best validation loss
    restored_best: bool = False      # the model ends on the best validation weights, not the last step's

    @property
    def tokens_per_s(self) -> float:
        """Training throughput in real tokens per second."""
        return self.tokens / max(self.seconds, 1e-9)


# --- small pieces, each testable on its own ---------------------------------------------------

def resolve_precision(precision: str, device: torch.device) -> Optional[torch.dtype]:
    """Autocast dtype for a ``precision`` name; ``auto`` asks ``config.autocast_dtype``."""
    choices = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if precision == "auto":
        return autocast_dtype(device)
    if precision not in choices:
        raise ValueError(f"precision={precision!r} is not one of auto, {', '.join(choices)}")
    return choices[precision]


def make_grad_scaler(dtype: Optional[torch.dtype], device: torch.device):
    """A GradScaler exactly when training in fp16 (else None)."""
    return torch.amp.GradScaler(device.type) if needs_grad_scaler(dtype) else None


def masked_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum of next-token cross-entropies over learned positions (logits at t predict labels at t+1)."""
    return causal_lm_loss(logits, labels, reduction="sum")


def learned_tokens(example: dict) -> int:
    """Number of positions of one example that contribute to the loss."""
    return sum(label != IGNORE_INDEX for label in example["labels"][1:])


def forward_logits(model: nn.Module, batch: dict) -> torch.Tensor:
    """Logits of ``model`` on a collated batch (TinyGPT returns a tensor, transformers an output)."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    if is_transformers_model(model):
        inputs["use_cache"] = False  # no KV cache in training; with one, packed position_ids are ignored
    elif "position_ids" in inputs and "attention_mask" not in inputs:
        raise ValueError("packed batches need a transformers model, which turns restarting position_ids "
                         "into a block-diagonal mask (TinyGPT: train TinyGPT.to_hf() instead)")
    out = model(**inputs)
    return out if isinstance(out, torch.Tensor) else out.logits


def _world() -> tuple[int, int]:
    return (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)


def _global_batches(lengths: Sequence[int], size: int, config: TrainConfig, start: int) -> Iterator[list[int]]:
    """Global micro-batches of example indices, forever, skipping the first ``start``."""
    if len(lengths) < size:  # every batch would be short and skipped: the stream would never yield
        raise ValueError(f"{len(lengths)} training examples cannot fill one global batch of {size}; "
                         "use a smaller batch_size or more data")
    position, epoch = 0, 0
    while True:
        g = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
        if config.group_by_length:
            batches = length_grouped_batches(lengths, size, g)
        else:
            order = torch.randperm(len(lengths), generator=g).tolist()
            batches = [order[i:i + size] for i in range(0, len(order), size)]
        for batch in batches:
            if len(batch) < size:  # a short batch cannot be split evenly across processes
                continue
            if position >= start:
                yield batch
            position += 1
        epoch += 1


@torch.no_grad()
def evaluate(model: nn.Module, data: Sequence[dict], collate: Callable, batch_size: int = 16,
             device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None) -> float:
    """Mean loss per learned token of ``data`` (sharded across processes under DDP)."""
    rank, world = _world()
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    shard = list(data)[rank::world]
    total = torch.zeros(2, dtype=torch.float64, device=device)
    for i in range(0, len(shard), batch_size):
        batch = {k: v.to(device) for k, v in collate(shard[i:i + batch_size]).items()}
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits = forward_logits(model, batch)
        total[0] += masked_loss_sum(logits, batch["labels"]).double()
        total[1] += (batch["labels"][:, 1:] != IGNORE_INDEX).sum()
    if world > 1:
        dist.all_reduce(total)
    model.train(was_training)
    return (total[0] / total[1].clamp(min=1)).item()


# --- checkpoints ------------------------------------------------------------------------------

def _rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, state: dict) -> Path:
    """``torch.save`` to a temporary file, fsync, then rename: a crash never leaves half a checkpoint."""
    return atomic_torch_save(state, path)


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint written by ``save_checkpoint`` (it holds RNG states: trusted files only)."""
    return torch.load(path, map_location="cpu", weights_only=False)


# --- the loop ---------------------------------------------------------------------------------

def train(model: nn.Module, train_data: Sequence[dict], collate: Callable, config: TrainConfig,
          eval_data: Optional[Sequence[dict]] = None, device: Optional[torch.device | str] = None,
          resume_from: Optional[str | Path] = None,
          on_step: Optional[Callable[[int, nn.Module], None]] = None) -> TrainResult:
    """Fine-tune ``model`` in place on encoded examples; return its metrics history.

    ``on_step(step, model)`` runs after every optimizer step (and its evaluation), e.g. to measure
    exact match along the way. Under ``torchrun`` (a process group is initialised) the model is wrapped in
    DistributedDataParallel and each process trains on its slice of every global batch. On CPU the run
    uses ``config.threads`` threads (restored afterwards).
    """
    device = torch.device(device) if device is not None else get_device()
    with cpu_threads(config.threads, device):
        return _train(model, train_data, collate, config, eval_data, device, resume_from, on_step)


def _train(model: nn.Module, train_data: Sequence[dict], collate: Callable, config: TrainConfig,
           eval_data: Optional[Sequence[dict]], device: torch.device, resume_from: Optional[str | Path],
           on_step: Optional[Callable[[int, nn.Module], None]]) -> TrainResult:
    from tqdm.auto import tqdm

    rank, world = _world()
    model.to(device).train()
    if config.gradient_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):  # its name since transformers 5.x
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        elif hasattr(model, "gradient_checkpointing_enable"):  # older transformers (e.g. Colab's)
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        else:
            raise ValueError(f"{type(model).__name__} has no activation_checkpointing_enable()")
    dtype = resolve_precision(config.precision, device)
    scaler = make_grad_scaler(dtype, device)
    optimizer = make_optimizer(model, lr=config.lr, weight_decay=config.weight_decay, betas=config.betas,
                               device=device)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(
        s, config.warmup_steps, config.max_steps, config.min_lr_ratio))
    history, step, best, bad_evals, best_weights, best_step = History(), 0, math.inf, 0, None, None

    if resume_from is not None:
        ckpt = load_checkpoint(resume_from)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        schedule.load_state_dict(ckpt["scheduler"])
        if scaler is not None and ckpt["scaler"] is not None:
            scaler.load_state_dict(ckpt["scaler"])
        history = History(**ckpt["history"])
        step, best, bad_evals, best_weights = ckpt["step"], ckpt["best"], ckpt["bad_evals"], ckpt["best_weights"]
        best_step = ckpt.get("best_step")
        _set_rng_state(ckpt["rng"])
    else:
        torch.manual_seed(config.seed)

    net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None) if world > 1 else model
    autocast = lambda: torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)  # noqa: E731
    trainable = [p for p in model.parameters() if p.requires_grad]

    def checkpoint(name: str) -> None:
        if config.checkpoint_dir and rank == 0:
            save_checkpoint(Path(config.checkpoint_dir) / name, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": schedule.state_dict(), "scaler": scaler.state_dict() if scaler else None,
                "rng": _rng_state(), "step": step, "history": asdict(history), "best": best,
                "bad_evals": bad_evals, "best_weights": best_weights, "best_step": best_step,
                "config": asdict(config)})

    def run_eval() -> bool:
        """Evaluate, remember the best weights; True when patience has run out."""
        nonlocal best, bad_evals, best_weights, best_step
        val = evaluate(net, eval_data, collate, config.batch_size, device, dtype)
        history.eval.append({"step": step, "val_loss": val})
        if val < best:
            best, bad_evals, best_step = val, 0, step
            best_weights = {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}
        else:
            bad_evals += 1
        return config.patience is not None and bad_evals >= config.patience

    if eval_data is not None and step == 0:
        run_eval()
    lengths = [len(ex["input_ids"]) for ex in train_data]
    global_size = config.batch_size * world
    stream = _global_batches(lengths, global_size, config, start=step * config.grad_accum)
    last = min(config.max_steps, config.stop_at or config.max_steps)
    stopped_early, tokens, seconds = False, 0, 0.0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    bar = tqdm(total=last, initial=step, desc="train", disable=not config.progress or rank != 0)
    while step < last:
        t0 = time.perf_counter()
        micro = [next(stream) for _ in range(config.grad_accum)]
        n_learned = sum(learned_tokens(train_data[i]) for b in micro for i in b)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        for j, indices in enumerate(micro):
            mine = [train_data[i] for i in indices[rank * config.batch_size:(rank + 1) * config.batch_size]]
            batch = {k: v.to(device, non_blocking=True) for k, v in collate(mine).items()}
            sync = nullcontext() if world == 1 or j == len(micro) - 1 else net.no_sync()
            with sync:
                with autocast():
                    part = masked_loss_sum(forward_logits(net, batch), batch["labels"])
                # DDP averages gradients over processes: scale by world so the result is sum / n_learned.
                loss = part * world / max(n_learned, 1)
                (scaler.scale(loss) if scaler else loss).backward()
            loss_sum += part.detach().double()
        if scaler:
            scaler.unscale_(optimizer)
        if config.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        lr = schedule.get_last_lr()[0]
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if world > 1:
            dist.all_reduce(loss_sum)
        step += 1
        step_loss = loss_sum.item() / max(n_learned, 1)  # .item() also waits for the GPU
        seconds += time.perf_counter() - t0
        tokens += sum(lengths[i] for b in micro for i in b)
        history.train.append({"step": step, "loss": step_loss, "lr": lr, "tokens": tokens})
        bar.update(1)
        bar.set_postfix(loss=f"{step_loss:.3f}", lr=f"{lr:.2e}")
        if eval_data is not None and ((config.eval_every and step % config.eval_every == 0) or step == config.max_steps):
            if run_eval() and step < last:
                stopped_early = True
        if config.save_every and step % config.save_every == 0:
            checkpoint("last.pt")
        if on_step is not None:
            on_step(step, model)
        if stopped_early:
            break
    bar.close()
    restore = (stopped_early and config.restore_best) or (config.load_best_at_end and step >= config.max_steps)
    restored = restore and best_weights is not None
    if restored:
        with torch.no_grad():
            for n, p in model.named_parameters():
                if n in best_weights:
                    p.copy_(best_weights[n].to(p.device))
    checkpoint("last.pt")
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return TrainResult(history, step, None if best == math.inf else best, stopped_early,
                       tokens, seconds, peak, best_step, restored)
