"""tests/gpu: CUDA code paths (run with `make gpu-check`). Without a CUDA device every test here is
skipped, and the reason says so; the CPU suite covers the same code on the CPU."""
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
REASON = ("no CUDA device (torch.cuda.is_available() is False): tests/gpu checks the CUDA paths; "
          "run `make gpu-check` on a machine with an NVIDIA GPU")


def pytest_collection_modifyitems(config, items):
    """Skip this folder's tests, with the reason, where CUDA is missing."""
    if torch.cuda.is_available():
        return
    for item in items:
        if Path(str(item.fspath)).resolve().is_relative_to(HERE):
            item.add_marker(pytest.mark.skip(reason=REASON))


@pytest.fixture
def cuda() -> torch.device:
    return torch.device("cuda")
