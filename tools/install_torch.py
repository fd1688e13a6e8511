"""Install the PyTorch build that fits this machine (run by `make venv` with the venv's python).

    python tools/install_torch.py             # install torch==2.13.0, the right build
    python tools/install_torch.py --dry-run   # print the decision and the pip commands only

* Linux/Windows without an NVIDIA GPU: the CPU build from PyTorch's CPU wheel index
  (``torch==2.13.0+cpu``, ~200 MB) instead of PyPI's default CUDA build (~15 NVIDIA packages, several GB).
  The index is probed first (bounded retries and timeout); when it cannot be reached, or pip fails
  on it, the plain ``pip install torch==2.13.0`` runs instead, a few seconds later, not minutes.
* macOS, and machines with an NVIDIA GPU: the plain install (PyPI's default build).
* torch 2.13.0 already installed (any build): nothing to do.

Environment: ``TORCH_VARIANT`` = ``auto`` (default) | ``cpu`` | ``default``;
``TORCH_CPU_INDEX`` (default the official CPU index); ``TORCH_VERSION`` (default 2.13.0).
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

TORCH_VERSION = "2.13.0"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PROBE_TIMEOUT_S = 5.0    # per attempt
PROBE_ATTEMPTS = 2       # bounded: at most ~10 s + 1 s pause before falling back
PIP_NETWORK = ["--timeout", "15", "--retries", "1"]  # overrides e.g. PIP_DEFAULT_TIMEOUT=180 for the CPU try


def log(message: str) -> None:
    """One line on stderr, prefixed so `make` output shows where it comes from."""
    print(f"[install_torch] {message}", file=sys.stderr, flush=True)


def has_nvidia_gpu() -> bool:
    """True when an NVIDIA driver is visible (its /proc entry, or nvidia-smi listing a GPU)."""
    if Path("/proc/driver/nvidia/version").exists():
        return True
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def index_reachable(url: str, timeout: float = PROBE_TIMEOUT_S, attempts: int = PROBE_ATTEMPTS,
                    pause: float = 1.0) -> bool:
    """True if ``url``/torch/ answers an HTTP request within ``attempts`` tries of ``timeout`` seconds."""
    target = url.rstrip("/") + "/torch/"
    if target.startswith("file:"):
        return Path(urllib.request.url2pathname(target[len("file:"):])).exists()
    for attempt in range(1, attempts + 1):
        try:
            with urllib.request.urlopen(urllib.request.Request(target, method="HEAD"), timeout=timeout):
                return True
        except urllib.error.HTTPError as err:  # the server answered: reachable, even if it dislikes HEAD
            return err.code < 500
        except (OSError, ValueError) as err:  # URLError, timeouts, refused connections, DNS failures
            log(f"probe {attempt}/{attempts} of {target} failed: {getattr(err, 'reason', err)}")
            if attempt < attempts:
                time.sleep(pause)
    return False


def choose_variant(system: str, nvidia: bool, requested: str = "auto") -> str:
    """``"cpu"`` (CPU wheel index) or ``"default"`` (plain pip install) for this machine."""
    if requested not in ("auto", "cpu", "default"):
        raise ValueError(f"TORCH_VARIANT must be auto, cpu or default, not {requested!r}")
    if requested != "auto":
        return requested
    if system == "Darwin" or nvidia:  # macOS wheels are CPU/MPS already; CUDA machines want CUDA
        return "default"
    return "cpu"


def pip_commands(variant: str, version: str, index: str, reachable: bool) -> list[list[str]]:
    """The pip argument lists to try in order: the CPU-index install first (if any), then the plain one."""
    plain = ["install", f"torch=={version}"]
    if variant != "cpu" or not reachable:
        return [plain]
    return [["install", f"torch=={version}+cpu", "--extra-index-url", index, *PIP_NETWORK], plain]


def installed_version() -> str | None:
    """Version of torch installed in this interpreter's environment, or None."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch")
    except PackageNotFoundError:
        return None


def main(argv: list[str] | None = None) -> int:
    """Decide, then run pip (falling back to the plain install); the exit code is pip's last one."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="print the commands, install nothing")
    args = parser.parse_args(argv)
    version = os.environ.get("TORCH_VERSION", TORCH_VERSION)
    index = os.environ.get("TORCH_CPU_INDEX", CPU_INDEX)
    have = installed_version()
    if have is not None and have.split("+")[0] == version:
        log(f"torch {have} is already installed")
        return 0
    try:
        variant = choose_variant(platform.system(), has_nvidia_gpu(), os.environ.get("TORCH_VARIANT", "auto"))
    except ValueError as err:
        log(str(err))
        return 2
    reachable = variant == "cpu" and index_reachable(index)
    if variant == "cpu" and not reachable:
        log(f"{index} cannot be reached: falling back to `pip install torch=={version}` "
            "(on Linux this may pick PyPI's larger CUDA build)")
    commands = pip_commands(variant, version, index, reachable)
    log(f"variant={variant}; will try: " + " || ".join("pip " + " ".join(c) for c in commands))
    if args.dry_run:
        for command in commands:
            print("pip " + " ".join(command))
        return 0
    rc = 1
    for k, command in enumerate(commands):
        rc = subprocess.call([sys.executable, "-m", "pip", *command, "-q"])
        if rc == 0:
            return 0
        if k + 1 < len(commands):
            log(f"pip exited with {rc}; trying the plain install")
    return rc


if __name__ == "__main__":
    sys.exit(main())
