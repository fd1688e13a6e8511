"""tools/install_torch.py: which PyTorch build `make venv` installs, and the quick fallback when
PyTorch's CPU wheel index cannot be reached (simulated with local sockets; nothing is installed)."""
from __future__ import annotations

import http.server
import importlib.util
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tools" / "install_torch.py"


def _load():
    spec = importlib.util.spec_from_file_location("install_torch", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


it = _load()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: connections are refused


@pytest.mark.parametrize("system,nvidia,expected", [
    ("Linux", False, "cpu"), ("Windows", False, "cpu"), ("Linux", True, "default"),
    ("Darwin", False, "default"), ("Darwin", True, "default")])
def test_variant_follows_the_machine(system, nvidia, expected):
    assert it.choose_variant(system, nvidia) == expected


def test_variant_override_and_bad_value():
    assert it.choose_variant("Linux", True, "cpu") == "cpu"
    assert it.choose_variant("Linux", False, "default") == "default"
    with pytest.raises(ValueError, match="auto, cpu or default"):
        it.choose_variant("Linux", False, "cuda13")


def test_commands_cpu_index_first_then_plain_install():
    cmds = it.pip_commands("cpu", "2.13.0", "https://example.invalid/whl/cpu", reachable=True)
    assert cmds[0][:2] == ["install", "torch==2.13.0+cpu"]
    assert cmds[0][cmds[0].index("--extra-index-url") + 1] == "https://example.invalid/whl/cpu"
    assert "--timeout" in cmds[0] and "--retries" in cmds[0]  # pip's own retries are bounded too
    assert cmds[1] == ["install", "torch==2.13.0"]
    assert it.pip_commands("cpu", "2.13.0", "x", reachable=False) == [["install", "torch==2.13.0"]]
    assert it.pip_commands("default", "2.13.0", "x", reachable=True) == [["install", "torch==2.13.0"]]


def test_refused_index_is_unreachable_after_bounded_attempts(capsys):
    url = f"http://127.0.0.1:{_closed_port()}/whl/cpu"
    assert not it.index_reachable(url, timeout=1, attempts=3, pause=0)
    assert capsys.readouterr().err.count("failed") == 3


def test_silent_index_times_out():
    """A server that accepts the connection and never answers: the per-attempt timeout ends it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    try:
        url = f"http://127.0.0.1:{server.getsockname()[1]}/whl/cpu"
        assert not it.index_reachable(url, timeout=0.3, attempts=2, pause=0)
    finally:
        server.close()


def test_unresolvable_host_is_unreachable():
    assert not it.index_reachable("http://no-such-host.invalid/whl/cpu", timeout=1, attempts=1)


def test_answering_index_is_reachable(tmp_path):
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "index.html").write_text("<a href='torch-2.13.0+cpu.whl'>x</a>")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(tmp_path), **k)

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        assert it.index_reachable(f"http://127.0.0.1:{httpd.server_port}/", timeout=5, attempts=1)
    finally:
        httpd.shutdown()
    assert it.index_reachable(tmp_path.as_uri(), attempts=1)           # a file:// index (a local mirror)
    assert not it.index_reachable((tmp_path / "missing").as_uri(), attempts=1)


def _dry_run(**env) -> subprocess.CompletedProcess:
    full = {**os.environ, "TORCH_VERSION": "0.0.1", **env}  # 0.0.1: never "already installed"
    return subprocess.run([sys.executable, str(SCRIPT), "--dry-run"], capture_output=True, text=True,
                          env=full, timeout=60)


def test_script_falls_back_to_plain_install_when_index_unreachable():
    out = _dry_run(TORCH_VARIANT="cpu", TORCH_CPU_INDEX=f"http://127.0.0.1:{_closed_port()}/whl/cpu")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["pip install torch==0.0.1"]
    assert "cannot be reached" in out.stderr


def test_script_uses_cpu_index_when_reachable(tmp_path):
    (tmp_path / "torch").mkdir()
    out = _dry_run(TORCH_VARIANT="cpu", TORCH_CPU_INDEX=tmp_path.as_uri())
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith(f"pip install torch==0.0.1+cpu --extra-index-url {tmp_path.as_uri()}")
    assert lines[1] == "pip install torch==0.0.1"


def test_script_rejects_bad_variant():
    out = _dry_run(TORCH_VARIANT="rocm")
    assert out.returncode == 2 and "auto, cpu or default" in out.stderr


def test_failed_cpu_install_falls_back(monkeypatch, tmp_path):
    """pip fails on the CPU index (say, no wheel for this Python): the plain install runs next."""
    (tmp_path / "torch").mkdir()
    calls = []
    monkeypatch.setenv("TORCH_VARIANT", "cpu")
    monkeypatch.setenv("TORCH_VERSION", "0.0.1")
    monkeypatch.setenv("TORCH_CPU_INDEX", tmp_path.as_uri())
    monkeypatch.setattr(it.subprocess, "call", lambda cmd: calls.append(cmd[3:5]) or (1 if len(calls) == 1 else 0))
    assert it.main([]) == 0
    assert calls == [["install", "torch==0.0.1+cpu"], ["install", "torch==0.0.1"]]


def test_already_installed_does_nothing(monkeypatch):
    monkeypatch.setattr(it, "installed_version", lambda: "2.13.0+cpu")
    monkeypatch.delenv("TORCH_VERSION", raising=False)
    monkeypatch.setattr(it.subprocess, "call", lambda cmd: pytest.fail(f"pip should not run: {cmd}"))
    assert it.main([]) == 0


def test_makefile_uses_the_script():
    makefile = (ROOT / "Makefile").read_text()
    assert "tools/install_torch.py" in makefile
    assert "pip install -q torch" not in makefile
