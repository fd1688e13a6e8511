"""Helpers for the chapter 10 server tests: a tiny model directory, a free port, a server process."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

from instructlib.deploy.server import wait_ready

TEXTS = ["Reverse the order of the words.\n\napple bread chair", "Add the two numbers.\n\n12 45",
         "What is the capital of this country?\n\nFrance", "Sort the numbers from smallest to largest.\n\n9 3 71"] * 40


def make_tiny_model_dir(path: Path) -> Path:
    """A randomly initialised 2-layer GPT-2 and a small byte-level BPE with the course chat template."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from instructlib.tokenization import train_bpe

    tok = train_bpe(TEXTS, 320, min_frequency=1, model_max_length=64)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=2, n_head=2,
                                       eos_token_id=tok.eos_token_id, bos_token_id=tok.eos_token_id,
                                       pad_token_id=tok.pad_token_id))
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def make_adapter(model_dir: Path, out: Path, seed: int) -> Path:
    """A peft LoRA adapter for the tiny model with random non-zero B (so it changes the answers)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn", "c_fc"], fan_in_fan_out=True))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    model.save_pretrained(out)
    return out


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server_process(*args: str, env: dict | None = None):
    """Run ``instructlib serve ARGS --port P`` as a child process; yield (base_url, process); always stop it."""
    port = free_port()
    cmd = [sys.executable, "-m", "instructlib.cli", "serve", *args, "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc=proc)
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def server_thread(config, ready: bool = True):
    """Run ``create_app(config)`` with uvicorn in a thread; yield its base URL once ready (or just up); always stop it."""
    import uvicorn

    from instructlib.deploy.server import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(config), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, timeout=60, path="/ready" if ready else "/health")
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=15)
