"""Chapter 05: fine-tuning runs cached on disk — train once, keep the weights and the history, and on
every rerun of a notebook only load and evaluate.

A run is named by what determines it: the training configuration, a hash of the encoded training
and validation data (so "no prompt masking" or "no end-of-text token" are different runs without
extra bookkeeping) and a caller's description of the model (``key``). The directory holds
``model.pt`` (the trained parameters the run ended on; the frozen rest comes from ``make_model``) and ``run.json`` (history, best step, exact-match
curve, sizes); it is written with ``files.build_once``, so an interrupted build leaves nothing.

This is the course's one run cache: chapter 09's capstone (``evaluation.capstone.cached_finetune``)
and chapter 05's 13-family model (``train.course_sft``) train through ``cached_train`` too.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
from torch import nn

from ..config import cache_dir, get_profile, without_default_threads
from ..files import atomic_torch_save, atomic_write_json, build_once
from ..stats import t_quantile
from .loop import TrainConfig, train


@dataclass
class CachedRun:
    """A trained model and what its run recorded (``info`` is plain JSON)."""

    model: nn.Module
    info: dict
    path: Path
    from_cache: bool

    def memo(self, name: str, compute: Callable[[], object]):
        """A JSON result of this run's model (e.g. its answers to a test set), computed once and kept."""
        return memo_json(self.path / f"{name}.json", compute)


def data_fingerprint(data: Optional[Sequence[dict]]) -> str:
    """Short hash of encoded examples (their input_ids and labels, in order)."""
    h = hashlib.sha256()
    for ex in data or ():
        h.update(json.dumps([list(map(int, ex["input_ids"])), list(map(int, ex["labels"]))]).encode())
    return h.hexdigest()[:16]


def run_dir(name: str, config: TrainConfig, train_data: Sequence[dict], eval_data: Optional[Sequence[dict]],
            key: Optional[dict] = None) -> Path:
    """Cache directory of a run: ``<cache>/sft-runs/<name>-<profile>-<hash>``."""
    settings = without_default_threads({k: v for k, v in asdict(config).items()
                                        if k not in ("progress", "checkpoint_dir", "save_every")})
    ident = json.dumps({"config": settings, "train": data_fingerprint(train_data),
                        "eval": data_fingerprint(eval_data), "key": key or {}}, sort_keys=True, default=str)
    digest = hashlib.sha256(ident.encode()).hexdigest()[:10]
    return cache_dir() / "sft-runs" / f"{name}-{get_profile().name}-{digest}"


def cached_train(name: str, make_model: Callable[[], nn.Module], train_data: Sequence[dict], collate: Callable,
                 config: TrainConfig, *, eval_data: Optional[Sequence[dict]] = None, key: Optional[dict] = None,
                 curve: Optional[Callable[[nn.Module], dict]] = None, curve_steps: Sequence[int] = (),
                 device: Optional[torch.device | str] = None) -> CachedRun:
    """Train ``make_model()`` with ``train`` unless the same run is cached; return the model and its record.

    ``curve(model)`` (e.g. exact match on a test slice) is measured before training and after each
    step in ``curve_steps``, on the weights of that step; the returned model carries the weights the
    run ended on (the best validation weights when ``config.load_best_at_end``).
    """
    target = run_dir(name, config, train_data, eval_data, key)

    def build(tmp: Path) -> None:
        model = make_model()
        points = []
        if curve is not None:
            points.append({"step": 0, **curve(model)})

        def on_step(step: int, m: nn.Module) -> None:
            if curve is not None and step in set(curve_steps):
                points.append({"step": step, **curve(m)})
                m.train()

        t0 = time.perf_counter()
        result = train(model, train_data, collate, config, eval_data=eval_data, device=device, on_step=on_step)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        atomic_torch_save({n: p.detach().cpu() for n, p in model.named_parameters() if p.requires_grad},
                          tmp / "model.pt")  # the rest is make_model()'s, rebuilt on load
        atomic_write_json(tmp / "run.json", {
            "name": name, "key": key or {}, "config": asdict(config), "examples": len(train_data),
            "history": asdict(result.history),
            "step": result.step, "best_step": result.best_step, "best_val_loss": result.best_val_loss,
            "restored_best": result.restored_best, "stopped_early": result.stopped_early,
            "tokens": result.tokens, "train_seconds": result.seconds,
            "wall_seconds": time.perf_counter() - t0, "trainable": trainable, "total": total, "curve": points,
            "torch_threads": config.threads or torch.get_num_threads()})

    from_cache = target.exists()
    build_once(target, build)
    return load_run(target, make_model, device, from_cache)


def load_run(target: Path, make_model: Callable[[], nn.Module], device: Optional[torch.device | str] = None,
             from_cache: bool = True) -> CachedRun:
    """The run ``cached_train`` built in ``target``: ``make_model()`` with the run's trained weights."""
    model = make_model()
    missing, unexpected = model.load_state_dict(torch.load(target / "model.pt", map_location="cpu", weights_only=True),
                                                strict=False)
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    if unexpected or trained & set(missing):
        raise ValueError(f"{target / 'model.pt'}: weights do not fit make_model(): unexpected {unexpected[:3]}, "
                         f"missing {sorted(trained & set(missing))[:3]}")
    if device is not None:
        model.to(device)
    model.eval()
    return CachedRun(model, json.loads((target / "run.json").read_text()), target, from_cache)


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Mean and the half-width of its Student-t interval over runs (half-width nan for a single run)."""
    n = len(values)
    if n == 0:
        raise ValueError("no values")
    mean = sum(values) / n
    if n == 1:
        return mean, float("nan")
    sd = (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5
    return mean, t_quantile(n - 1, confidence) * sd / n ** 0.5


def memo_json(path: str | Path, compute: Callable[[], object]):
    """``compute()`` once, kept as JSON at ``path`` (written atomically); later calls read the file."""
    path = Path(path)
    if path.exists():
        return json.loads(path.read_text())
    value = compute()
    atomic_write_json(path, value)
    return json.loads(path.read_text())


def physical_cores() -> int:
    """CPU cores this process may run threads on in parallel, hyper-threads of one core counted once."""
    logical = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        import psutil  # installed with ipykernel; without it, every logical CPU counts as a core
        physical = psutil.cpu_count(logical=False) or 0
    except ImportError:
        physical = 0
    per_core = max(1, (os.cpu_count() or logical) // physical) if physical else 1
    return max(1, logical // per_core)


def processes_for(threads: Optional[int], jobs: int) -> int:
    """How many runs of ``threads`` CPU threads each fit side by side on this machine's physical cores (at
    least 1): more threads than cores slow every run down (2 two-thread runs on 2 cores: 0.46x one after
    another in ``benchmarks/parallel_runs.py --kind testbed``)."""
    return max(1, min(jobs, physical_cores() // max(threads or 1, 1)))


def load_course_base(base_key: str):
    """(model, tokenizer) of the course TinyGPT, checked to be the pretrained weights ``base_key`` names
    (a worker process of ``run_in_processes`` loads it itself: the parent's model is not sent)."""
    from ..models import load_model, load_tokenizer
    from ..models.course import course_model_dir

    if course_model_dir().name != base_key:
        raise RuntimeError(f"the worker's course model is {course_model_dir().name}, not {base_key}")
    return load_model("tinygpt"), load_tokenizer("tinygpt")


def run_in_processes(fn: Callable[..., Any], jobs: Sequence[tuple], processes: int, desc: str = "runs") -> list:
    """``[fn(*job) for job in jobs]``, in ``processes`` fresh (spawned) worker processes; results in job order.

    For runs that each use fewer threads than the machine has cores (two one-thread runs at once on 2
    cores take about the time of one). A run's numbers do not depend on the process it ran in, only on
    its thread count, so the cache fills exactly as a loop would fill it. Workers inherit the environment
    (the profile and the cache directory). ``fn`` must be a module-level function and each job picklable.
    """
    from tqdm.auto import tqdm

    if processes <= 1 or len(jobs) <= 1:
        return [fn(*job) for job in tqdm(jobs, desc=desc)]
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(fn, *job) for job in jobs]
        for done in tqdm(as_completed(futures), total=len(futures), desc=f"{desc} ({processes} processes)"):
            done.result()  # a failed run stops here, with its own traceback
        return [f.result() for f in futures]
