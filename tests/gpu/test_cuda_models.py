"""CUDA paths of chapters 02-03: attention parity with torch SDPA, TinyGPT's KV cache and its
transformers export, the cached course model built on CUDA (`make gpu-check`; skipped without CUDA)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from instructlib.nn.attention import MultiHeadAttention, scaled_dot_product_attention
from instructlib.nn.gpt import GPTConfig, TinyGPT


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float16, 2e-3), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("is_causal", [False, True])
def test_attention_matches_torch_sdpa_on_cuda(cuda, dtype, tol, is_causal):
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (torch.randn(2, 4, 128, 32, device=cuda, dtype=dtype, generator=g) for _ in range(3))
    ours = scaled_dot_product_attention(q, k, v, is_causal=is_causal)
    theirs = F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)  # flash / efficient kernels on CUDA
    assert ours.dtype == dtype and ours.device.type == "cuda"
    torch.testing.assert_close(ours.float(), theirs.float(), rtol=tol, atol=tol)


def test_attention_with_mask_and_gradients_on_cuda(cuda):
    g = torch.Generator(device="cuda").manual_seed(1)
    q, k, v = (torch.randn(2, 2, 16, 8, device=cuda, generator=g, requires_grad=True) for _ in range(3))
    mask = torch.rand(2, 1, 16, 16, device=cuda, generator=g) > 0.3
    mask[..., 0] = True
    ours = scaled_dot_product_attention(q, k, v, attn_mask=mask)
    grads = torch.autograd.grad(ours.sum(), (q, k, v))
    theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    for a, b in zip(grads, torch.autograd.grad(theirs.sum(), (q, k, v))):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_multi_head_attention_runs_under_autocast(cuda):
    mha = MultiHeadAttention(d_model=64, n_heads=4).to(cuda)
    x = torch.randn(2, 10, 64, device=cuda)
    with torch.autocast("cuda", dtype=torch.float16):
        y = mha(x)
    assert y.shape == x.shape and torch.isfinite(y).all()


def _tiny(cuda) -> TinyGPT:
    torch.manual_seed(0)
    return TinyGPT(GPTConfig(vocab_size=97, block_size=64, n_layer=2, n_head=2, n_embd=32, dropout=0.0)).to(cuda).eval()


def test_tinygpt_kv_cache_equals_full_recompute_on_cuda(cuda):
    model = _tiny(cuda)
    prompt = torch.randint(0, 97, (3, 7), device=cuda, generator=torch.Generator(device="cuda").manual_seed(2))
    cached = model.generate(prompt, max_new_tokens=20, do_sample=False, use_cache=True)
    plain = model.generate(prompt, max_new_tokens=20, do_sample=False, use_cache=False)
    assert cached.device.type == "cuda" and torch.equal(cached, plain)


def test_tinygpt_export_to_transformers_on_cuda(cuda):
    model = _tiny(cuda)
    hf = model.to_hf().eval()
    assert next(hf.parameters()).device.type == "cuda"
    ids = torch.randint(0, 97, (2, 16), device=cuda, generator=torch.Generator(device="cuda").manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(model(ids), hf(ids).logits, rtol=1e-4, atol=1e-4)
    ours = model.generate(ids[:, :5], max_new_tokens=10, do_sample=False)
    theirs = hf.generate(ids[:, :5], max_new_tokens=10, do_sample=False, pad_token_id=0,
                         attention_mask=torch.ones_like(ids[:, :5]))
    assert torch.equal(ours, theirs)


def test_course_tinygpt_builds_on_cuda_and_loads_on_cpu(cuda, tmp_path, monkeypatch):
    """The chapter-03 cache: pretrained on the GPU (ci sizes), saved, reloaded on the CPU with finite perplexity."""
    from instructlib.models.course import course_model_meta, load_course_model

    monkeypatch.setenv("INSTRUCTLIB_CACHE", str(tmp_path))
    model = load_course_model("ci", progress=False)
    meta = course_model_meta("ci")
    assert next(model.parameters()).device.type == "cpu"
    assert meta["heldout_perplexity"] < meta["gpt_config"]["vocab_size"]  # it learned something
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp dirs left
