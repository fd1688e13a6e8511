"""Exercises: run code cells in a fresh, disposable IPython kernel under a time limit and an output cap.

One kernel per call, started with the current interpreter (so the active venv is used). With a
:class:`Sandbox` the kernel starts through :mod:`.sandbox` (own uid, namespaces, limits, scrubbed
environment, empty home and ``IPYTHONDIR``) and talks to the grader over unix sockets; without one
(the trusted key) it runs as the grader. Whatever the code does (raise, loop, ``sys.exit``,
``os._exit``, flood any kind of output, fork daemons), the call returns a :class:`CellRun` per cell
and every process the kernel started is killed at the end. Values sent by ``check`` come back as
``CellRun.checks`` (raw JSON payloads; the grader decodes and compares them).
"""
from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import zmq
from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager

from . import sandbox as sb
from .checks import MIME

# Cell outcomes. After "timeout", "died", "flood" or "protocol" the remaining cells do not run.
OK, ERROR, TIMEOUT, DIED, FLOOD, PROTOCOL, NOT_RUN = (
    "ok", "error", "timeout", "died", "flood", "protocol", "not run")
INTERRUPT_GRACE_S = 1.0
START_ATTEMPTS = 3
KEEP_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "PYTHONPATH", "VIRTUAL_ENV", "CONDA_PREFIX",
            "INSTRUCTLIB_PROFILE")
FIXED_ENV = {"MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
             "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
             "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1", "MALLOC_ARENA_MAX": "2"}


class KernelStartError(RuntimeError):
    """The kernel did not start after every attempt: a grader problem, never the student's."""


@dataclass
class CellRun:
    """What happened to one cell: ``status``, the error (``"ExcType: message"``) and check payloads."""

    status: str
    error: str = ""
    ename: str = ""
    checks: list = field(default_factory=list)


@dataclass
class Sandbox:
    """How student kernels are isolated: the level this machine allows, hidden paths, limits."""

    level: sb.Level
    hide: list[str] = field(default_factory=list)
    limits: sb.Limits = field(default_factory=sb.Limits)
    cache: str = ""  # the course cache (INSTRUCTLIB_CACHE) kernels may read
    expose: list[str] = field(default_factory=list)  # paths kernels must read (Python, packages)


class _Spec(KernelSpecManager):
    """Kernel specs resolved to ``sys.executable`` behind an optional wrapper argv."""

    prefix: list = []

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        argv = [*self.prefix, sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                "--HistoryManager.hist_file=:memory:"]
        return KernelSpec(argv=argv, display_name="Python (grader)", language="python", resource_dir="")


def _output_size(msg: dict) -> int:
    """Bytes a IOPub message carries (content, metadata and buffers: every kind of output counts)."""
    try:
        size = len(json.dumps(msg.get("content", {}), default=str))
        size += len(json.dumps(msg.get("metadata", {}), default=str))
    except (ValueError, RecursionError):
        return 1 << 40
    return size + sum(len(b) for b in msg.get("buffers", []) or [])


def kernel_env(home: str, cache: str, marker: str) -> dict:
    """The scrubbed environment of a student kernel: nothing of the grader's beyond what it needs."""
    env = {k: os.environ[k] for k in KEEP_ENV if k in os.environ}
    env.update(FIXED_ENV)
    env.update(HOME=home, IPYTHONDIR=os.path.join(home, ".ipython"), MPLCONFIGDIR=os.path.join(home, ".mpl"),
               TMPDIR=home, USER="student", LOGNAME="student", INSTRUCTLIB_CACHE=cache, **{sb.MARKER: marker})
    return env


def run_cells(cells: list[str], *, timeout: float, max_output: int = 1_000_000, sandbox: Sandbox | None = None,
              uid: int | None = None, startup_timeout: float = 60.0, base_dir: str | None = None) -> list[CellRun]:
    """Execute ``cells`` in order in a new kernel; ``timeout`` (s) and ``max_output`` cover them all.

    Raises :class:`KernelStartError` if the kernel does not start after ``START_ATTEMPTS`` tries.
    """
    reasons = []
    for _ in range(START_ATTEMPTS):
        try:
            return _run_once(cells, timeout, max_output, sandbox, uid, startup_timeout, base_dir)
        except KernelStartError as err:
            reasons.append(str(err))
    raise KernelStartError(f"the kernel did not start ({START_ATTEMPTS} attempts): {reasons[-1]}")


def _run_once(cells, timeout, max_output, sandbox, uid, startup_timeout, base_dir) -> list[CellRun]:
    work = tempfile.mkdtemp(prefix="kernel-", dir=base_dir)
    home = os.path.join(work, "home")
    os.mkdir(home, 0o700)
    marker = uuid.uuid4().hex
    spec = _Spec()
    if sandbox is not None:
        config = sb.Config(work=work, home=home, uid=uid if sandbox.level.uid else None,
                           namespaces=sandbox.level.namespaces, hide=list(sandbox.hide),
                           expose=list(sandbox.expose), limits=sandbox.limits)
        spec.prefix = config.argv()
        env = kernel_env(home, sandbox.cache, marker)
    else:  # the trusted key: the grader's environment, same numerics as the students' kernels
        env = {**os.environ, **FIXED_ENV, sb.MARKER: marker}
    ctx = zmq.Context()
    # bounds the grader's memory: a bigger message drops the connection (then the clock runs out)
    ctx.setsockopt(zmq.MAXMSGSIZE, max(4 * max_output, 16 << 20))
    ctx.setsockopt(zmq.RCVHWM, 100)
    km = KernelManager(kernel_name="python3", kernel_spec_manager=spec, transport="ipc", context=ctx)
    km.connection_file = os.path.join(work, "kernel.json")
    client = None
    try:
        try:
            km.start_kernel(env=env, cwd=home, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
            client = km.client(context=ctx)
            client.start_channels()
            client.wait_for_ready(timeout=startup_timeout)
        except Exception as err:  # noqa: BLE001 - any start failure is retried, then a grader error
            why = Path(work, sb.ERROR_FILE)
            raise KernelStartError(why.read_text()[:500].strip() if why.exists() else f"{type(err).__name__}: {err}")
        return _execute(km, client, cells, time.monotonic() + timeout, max_output)
    finally:
        if client is not None:
            client.stop_channels()
        _kill(km, sandbox, uid, marker)
        ctx.destroy(linger=0)
        shutil.rmtree(work, ignore_errors=True)


def _execute(km: KernelManager, client, cells: list[str], deadline: float, max_output: int) -> list[CellRun]:
    runs: list[CellRun] = []
    used = 0
    for code in cells:
        msg_id = client.execute(code, store_history=False, allow_stdin=False, stop_on_error=False)
        run = CellRun(NOT_RUN)
        status = None
        while status is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                status = TIMEOUT
                break
            try:
                msg = client.get_iopub_msg(timeout=min(remaining, 0.25))
            except queue.Empty:
                if not km.is_alive():
                    status = DIED
                continue
            except Exception:  # noqa: BLE001 - a forged, unsigned or absurdly nested message
                status = PROTOCOL
                break
            used += _output_size(msg)  # counted whichever cell (or thread) printed it
            if used > max_output:
                status = FLOOD
                break
            if not isinstance(msg.get("parent_header"), dict) or msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg.get("msg_type"), msg.get("content") or {}
            if kind == "error":
                run.ename = str(content.get("ename", "Error"))[:200]
                run.error = f"{run.ename}: {content.get('evalue', '')}".rstrip(": ")
            elif kind == "display_data" and isinstance(content.get("data"), dict) and MIME in content["data"]:
                run.checks.append(content["data"][MIME])
            elif kind == "status" and content.get("execution_state") == "idle":
                status = ERROR if run.error else OK
        run.status = status
        runs.append(run)
        if status == TIMEOUT:
            _interrupt(km, client)
        if status in (TIMEOUT, DIED, FLOOD, PROTOCOL):
            break
    return runs + [CellRun(NOT_RUN) for _ in cells[len(runs):]]


def _interrupt(km: KernelManager, client) -> None:
    """Send SIGINT and give the kernel a moment to go idle (it is killed afterwards anyway)."""
    try:
        km.interrupt_kernel()
        end = time.monotonic() + INTERRUPT_GRACE_S
        while time.monotonic() < end:
            msg = client.get_iopub_msg(timeout=end - time.monotonic())
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return
    except Exception:  # noqa: BLE001 - the kill that follows is what matters
        return


def _kill(km: KernelManager, sandbox: Sandbox | None, uid: int | None, marker: str) -> None:
    """SIGKILL the kernel and everything it started: by uid when it has its own, else by marker."""
    try:
        if km.has_kernel:
            km.shutdown_kernel(now=True)
    except Exception:  # noqa: BLE001 - a kernel that is already gone is fine
        pass
    if sandbox is not None and sandbox.level.uid and uid is not None:
        survivors = sb.kill_uid(uid)
        if not sandbox.level.namespaces:
            sb.remove_files_of(uid)
    else:
        survivors = sb.kill_marked(marker)
    if survivors:
        raise RuntimeError(f"processes {survivors[:5]} of the sandbox survived SIGKILL")
