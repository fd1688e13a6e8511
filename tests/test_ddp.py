"""The loop under torchrun: 2 CPU processes (gloo) follow the single-process loss curve."""
import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from instructlib.train.__main__ import main


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tmp_path):
    single, ddp = tmp_path / "single.json", tmp_path / "ddp.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), "-m", "instructlib.train", "--steps", "5", "--batch-size", "4",
           "--out", str(ddp)]
    launched = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert "world=2" in launched.stdout
    main(["--steps", "5", "--batch-size", "8", "--out", str(single)])  # same global batch, one process
    one, two = json.loads(single.read_text())["losses"], json.loads(ddp.read_text())["losses"]
    assert len(one) == len(two) == 5
    assert one[0] != pytest.approx(one[-1], abs=1e-3), "the loss should move, or the test proves nothing"
    torch.testing.assert_close(torch.tensor(two), torch.tensor(one), rtol=1e-5, atol=1e-5)
