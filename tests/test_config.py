import pytest
import torch

from instructlib import config


@pytest.mark.parametrize("name", ["ci", "cpu", "gpu"])
def test_profile_from_environment(monkeypatch, name):
    monkeypatch.setenv("INSTRUCTLIB_PROFILE", name)
    assert config.get_profile().name == name


def test_default_profile_follows_cuda(monkeypatch):
    monkeypatch.delenv("INSTRUCTLIB_PROFILE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert config.get_profile().name == "gpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert config.get_profile().name == "cpu"


def test_unknown_profile_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("INSTRUCTLIB_PROFILE", "laptop")
    with pytest.raises(ValueError, match="INSTRUCTLIB_PROFILE='laptop'.*ci, cpu, gpu"):
        config.get_profile()


def test_pick_chooses_per_profile_and_gpu_falls_back_to_cpu():
    assert config.Profile("ci").pick(ci=1, cpu=2, gpu=3) == 1
    assert config.Profile("gpu").pick(ci=1, cpu=2, gpu=3) == 3
    assert config.Profile("gpu").pick(ci=1, cpu=2) == 2


def test_set_seed_makes_torch_and_numpy_repeatable():
    import numpy as np

    config.set_seed(7)
    a = (torch.rand(3), np.random.rand(3))
    config.set_seed(7)
    b = (torch.rand(3), np.random.rand(3))
    assert torch.equal(a[0], b[0]) and (a[1] == b[1]).all()


@pytest.mark.parametrize(
    "device_type, bf16, expected",
    [
        ("cuda", True, torch.bfloat16),  # Ampere and newer (A100, L4, H100)
        ("cuda", False, torch.float16),  # T4 / V100: no fast bf16
        ("cpu", False, None),
        ("cpu", True, None),
        ("mps", False, None),
    ],
)
def test_autocast_dtype_choice(device_type, bf16, expected):
    assert config.choose_autocast_dtype(device_type, bf16) == expected


def test_grad_scaler_only_for_fp16():
    assert config.needs_grad_scaler(torch.float16)
    assert not config.needs_grad_scaler(torch.bfloat16)
    assert not config.needs_grad_scaler(None)


def test_autocast_dtype_reads_the_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    assert config.autocast_dtype(torch.device("cuda")) == torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert config.autocast_dtype(torch.device("cuda")) == torch.bfloat16
    assert config.autocast_dtype(torch.device("cpu")) is None


def test_device_is_cpu_without_accelerators(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert config.get_device() == torch.device("cpu")


def test_cache_dir_is_configurable(monkeypatch, tmp_path):
    monkeypatch.setenv("INSTRUCTLIB_CACHE", str(tmp_path / "c"))
    assert config.cache_dir() == tmp_path / "c" and (tmp_path / "c").is_dir()
