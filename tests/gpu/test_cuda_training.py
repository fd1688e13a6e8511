"""CUDA training paths of chapter 05: precision choice, bf16 autocast, fp16 with GradScaler, fused AdamW,
exact resume on CUDA, peft LoRA under autocast (`make gpu-check`; skipped without CUDA)."""
from __future__ import annotations

import copy

import pytest
import torch

from instructlib.config import autocast_dtype, get_device, needs_grad_scaler
from instructlib.data.collate import DataCollatorForInstructions
from instructlib.nn.optim import make_optimizer
from instructlib.train.__main__ import tiny_random_setup
from instructlib.train.loop import TrainConfig, make_grad_scaler, resolve_precision, train

COLLATE = DataCollatorForInstructions(pad_token_id=0)


def _losses(result) -> list[float]:
    return [r["loss"] for r in result.history.train]


def test_device_and_precision_follow_the_hardware(cuda):
    assert get_device().type == "cuda"
    dtype = autocast_dtype(cuda)
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    assert dtype == expected
    assert needs_grad_scaler(dtype) == (dtype == torch.float16)
    assert resolve_precision("auto", cuda) == expected


@pytest.mark.parametrize("precision", ["bf16", "fp16", "fp32"])
def test_mixed_precision_training_learns(cuda, precision):
    if precision == "bf16" and not torch.cuda.is_bf16_supported(including_emulation=False):
        pytest.skip(f"{torch.cuda.get_device_name()} has no native bf16")
    model, data = tiny_random_setup()
    first = model.transformer.wte.weight.detach().clone()
    result = train(model, data, COLLATE, TrainConfig(max_steps=40, batch_size=8, lr=3e-3, warmup_steps=4,
                                                      precision=precision, progress=False), device=cuda)
    losses = _losses(result)
    assert all(torch.isfinite(torch.tensor(losses))), losses
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.2, losses
    assert next(model.parameters()).dtype == torch.float32  # autocast: master weights stay fp32
    assert not torch.equal(model.transformer.wte.weight.detach().cpu(), first.cpu())
    assert result.peak_memory_mb is not None and result.peak_memory_mb > 0
    assert (make_grad_scaler(resolve_precision(precision, cuda), cuda) is not None) == (precision == "fp16")


def test_fused_adamw_matches_the_plain_kernel(cuda):
    model, data = tiny_random_setup()
    model = model.to(cuda)
    twin = copy.deepcopy(model)
    fused = make_optimizer(model, lr=1e-2, weight_decay=0.1, device=cuda)
    assert fused.defaults["fused"] is True
    plain = torch.optim.AdamW([{**g, "params": [dict(twin.named_parameters())[n] for n, p in model.named_parameters()
                                                  for q in g["params"] if q is p]} for g in fused.param_groups],
                              lr=1e-2, fused=False, foreach=False)
    batch = {k: v.to(cuda) for k, v in COLLATE(data[:8]).items()}
    for _ in range(3):
        for m, opt in ((model, fused), (twin, plain)):
            opt.zero_grad()
            m(**batch).loss.backward()
            opt.step()
    for (name, a), b in zip(model.named_parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_resume_on_cuda_ends_where_an_uninterrupted_run_ends(cuda, tmp_path):
    """Dropout on CUDA draws from the CUDA RNG: the checkpoint must carry and restore it."""
    from transformers import GPT2Config, GPT2LMHeadModel

    def fresh():
        model, data = tiny_random_setup()
        torch.manual_seed(1)
        return GPT2LMHeadModel(GPT2Config(**{**model.config.to_dict(), "resid_pdrop": 0.1, "embd_pdrop": 0.1})), data

    config = dict(max_steps=8, batch_size=4, grad_accum=2, lr=1e-2, warmup_steps=2, group_by_length=True,
                  eval_every=3, precision="fp32", progress=False)
    torch.backends.cudnn.deterministic = True
    model, data = fresh()
    full = train(model, data, COLLATE, TrainConfig(**config), eval_data=data[:8], device=cuda)
    first, data = fresh()
    half = train(first, data, COLLATE, TrainConfig(**config, stop_at=4, checkpoint_dir=str(tmp_path)),
                 eval_data=data[:8], device=cuda)
    assert half.step == 4
    torch.manual_seed(123)
    torch.cuda.manual_seed_all(123)  # a new process starts from other CUDA RNG states
    second, data = fresh()
    resumed = train(second, data, COLLATE, TrainConfig(**config), eval_data=data[:8], device=cuda,
                    resume_from=tmp_path / "last.pt")
    assert resumed.step == 8
    # CUDA kernels (atomics in embedding backward) may reorder additions: equal to float rounding
    torch.testing.assert_close(torch.tensor(_losses(resumed)), torch.tensor(_losses(full)), rtol=1e-4, atol=1e-5)
    for (n, a), b in zip(model.named_parameters(), second.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=n)


def test_peft_lora_under_autocast(cuda):
    """Chapter 05's gpu recipe on a tiny Llama: only the adapters train, the base stays as it was."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    base = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                        pad_token_id=0, bos_token_id=0, eos_token_id=0))
    frozen = {n: p.detach().clone() for n, p in base.named_parameters()}
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                                            target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    _, data = tiny_random_setup()
    precision = "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"
    result = train(model, data, DataCollatorForInstructions(pad_token_id=0, packing=True, max_length=128),
                   TrainConfig(max_steps=30, batch_size=8, lr=1e-2, precision=precision, progress=False), device=cuda)
    losses = _losses(result)
    assert sum(losses[-5:]) < sum(losses[:5]), losses
    changed = {n for n, p in model.named_parameters() if "lora_" in n and p.requires_grad}
    assert changed
    for name, p in model.base_model.model.named_parameters():
        if "lora_" not in name:
            torch.testing.assert_close(p.detach().cpu(), frozen[name.replace(".base_layer", "")].cpu(), msg=name)
