"""Run code cells in a fresh, disposable IPython kernel under a time limit and an output cap.

One kernel per call, started with the current interpreter (so the active venv is used) and the
current environment, its stdout/stderr discarded (output arrives as IOPub messages, which are
counted). Whatever the code does (raise, loop, ``sys.exit``, ``os._exit``, flood the output), the
call returns a :class:`CellRun` per cell and the kernel's whole process group is killed at the end.
"""
from __future__ import annotations

import os
import queue
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager

# Cell outcomes. After "timeout", "died" or "flood" (and "startup") the remaining cells do not run.
OK, ERROR, TIMEOUT, DIED, FLOOD, STARTUP, NOT_RUN = (
    "ok", "error", "timeout", "died", "flood", "startup", "not run")
INTERRUPT_GRACE_S = 1.0


@dataclass
class CellRun:
    """What happened to one cell: ``status`` and, for errors, ``"ExcType: message"``."""

    status: str
    error: str = ""


class _ThisPython(KernelSpecManager):
    """Kernel specs resolved to ``sys.executable``, whatever kernels the user has installed."""

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                "--HistoryManager.hist_file=:memory:"]
        return KernelSpec(argv=argv, display_name="Python (grader)", language="python", resource_dir="")


def _output_size(msg: dict) -> int:
    """Bytes of output a IOPub message carries (stream text, rich data, tracebacks)."""
    content, kind = msg["content"], msg["msg_type"]
    if kind == "stream":
        return len(content.get("text", "").encode("utf-8", "replace"))
    if kind in ("display_data", "execute_result", "update_display_data"):
        return sum(len(str(v)) for v in content.get("data", {}).values())
    if kind == "error":
        return sum(len(x) for x in content.get("traceback", [])) + len(content.get("evalue", ""))
    return 0


def run_cells(cells: list[str], *, timeout: float, max_output: int = 1_000_000,
              env: dict | None = None, cwd: str | None = None, startup_timeout: float = 60.0
              ) -> list[CellRun]:
    """Execute ``cells`` in order in a new kernel; ``timeout`` (s) and ``max_output`` cover all."""
    env = dict(os.environ if env is None else env)
    env.setdefault("MPLBACKEND", "Agg")  # no inline images to count or render
    km = KernelManager(kernel_name="python3", kernel_spec_manager=_ThisPython())
    runs: list[CellRun] = []
    with tempfile.TemporaryDirectory(prefix="instructlib-grade-") as scratch:
        try:
            km.start_kernel(env=env, cwd=cwd or scratch, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            client = km.client()
            client.start_channels()
            try:
                client.wait_for_ready(timeout=startup_timeout)
            except RuntimeError as err:
                return [CellRun(STARTUP, f"kernel did not start: {err}") for _ in cells]
            try:
                runs = _execute(km, client, cells, time.monotonic() + timeout, max_output)
            finally:
                client.stop_channels()
        finally:
            _kill(km)
    return runs


def _execute(km: KernelManager, client, cells: list[str], deadline: float, max_output: int
             ) -> list[CellRun]:
    runs: list[CellRun] = []
    used = 0
    for code in cells:
        msg_id = client.execute(code, store_history=False, allow_stdin=False, stop_on_error=False)
        error, status = "", None
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
            used += _output_size(msg)  # counted whichever cell (or thread) printed it
            if used > max_output:
                status = FLOOD
            elif msg["parent_header"].get("msg_id") != msg_id:
                continue
            elif msg["msg_type"] == "error":
                c = msg["content"]
                error = f"{c.get('ename', 'Error')}: {c.get('evalue', '')}".rstrip(": ")
            elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                status = ERROR if error else OK
        runs.append(CellRun(status, error))
        if status == TIMEOUT:
            _interrupt(km, client)
        if status in (TIMEOUT, DIED, FLOOD):
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


def _kill(km: KernelManager) -> None:
    """SIGKILL the kernel's process group (the kernel and anything it spawned) and clean up."""
    try:
        if km.has_kernel:
            km.shutdown_kernel(now=True)
    except Exception:  # noqa: BLE001 - a kernel that is already gone is fine
        pass
