"""Parity of instructlib.nn.attention with torch SDPA and nn.MultiheadAttention."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from instructlib.nn.attention import (MultiHeadAttention, attention_weights, causal_mask,
                                      scaled_dot_product_attention)

ATOL = 1e-5
SHAPES = [(1, 1, 1, 4), (2, 3, 5, 8), (3, 4, 16, 16), (2, 2, 33, 64)]  # (B, H, T, D)


def qkv(b, h, t_q, d, t_k=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    t_k = t_q if t_k is None else t_k
    return (torch.randn(b, h, t_q, d, generator=g), torch.randn(b, h, t_k, d, generator=g),
            torch.randn(b, h, t_k, d, generator=g))


def random_bool_mask(shape, seed=1):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(shape, generator=g) > 0.4
    mask[..., 0] = True  # every query keeps at least one key (fully masked rows tested separately)
    return mask


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("is_causal", [False, True])
def test_sdpa_matches_torch(shape, is_causal):
    q, k, v = qkv(*shape)
    ours = scaled_dot_product_attention(q, k, v, is_causal=is_causal)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, atol=ATOL, rtol=0)


@pytest.mark.parametrize("t_q,t_k", [(3, 7), (7, 3), (1, 5)])
def test_causal_alignment_when_lengths_differ(t_q, t_k):
    q, k, v = qkv(2, 2, t_q, 8, t_k=t_k)
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, is_causal=True),
                               F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=ATOL, rtol=0)


@pytest.mark.parametrize("mask_shape", [(5, 7), (2, 1, 1, 7), (2, 3, 5, 7), (1, 3, 5, 7), (1, 7), (3, 1, 7)])
@pytest.mark.parametrize("kind", ["bool", "float"])
def test_sdpa_broadcast_masks_match_torch(mask_shape, kind):
    q, k, v = qkv(2, 3, 5, 8, t_k=7)
    mask = random_bool_mask(mask_shape)
    if kind == "float":  # additive mask: -inf blocks, finite values bias the scores
        bias = torch.randn(mask_shape, generator=torch.Generator().manual_seed(2))
        mask = bias.masked_fill(~mask, float("-inf"))
    ours = scaled_dot_product_attention(q, k, v, attn_mask=mask)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(ours, ref, atol=ATOL, rtol=0)


def test_explicit_scale_matches_torch():
    q, k, v = qkv(2, 2, 5, 8)
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.7),
                               F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.7), atol=ATOL, rtol=0)


def test_boolean_mask_means_true_attends():
    q, k, v = qkv(1, 1, 4, 8)
    only_first = torch.zeros(4, 4, dtype=torch.bool)
    only_first[:, 0] = True
    out = scaled_dot_product_attention(q, k, v, attn_mask=only_first)
    torch.testing.assert_close(out, v[..., :1, :].expand_as(out), atol=ATOL, rtol=0)


def test_fully_masked_rows_give_zeros_like_torch():
    q, k, v = qkv(2, 2, 4, 8)
    mask = torch.ones(4, 4, dtype=torch.bool)
    mask[1] = False
    q.requires_grad_(True)
    ours = scaled_dot_product_attention(q, k, v, attn_mask=mask)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(ours, ref, atol=ATOL, rtol=0)
    assert torch.all(ours[:, :, 1] == 0)
    ours.sum().backward()
    assert torch.isfinite(q.grad).all(), "a fully masked row must not poison gradients with NaN"


def test_gradients_match_torch():
    q, k, v = (t.requires_grad_(True) for t in qkv(2, 3, 6, 8))
    q2, k2, v2 = (t.detach().clone().requires_grad_(True) for t in (q, k, v))
    w = torch.randn(2, 3, 6, 8)
    (scaled_dot_product_attention(q, k, v, is_causal=True) * w).sum().backward()
    (F.scaled_dot_product_attention(q2, k2, v2, is_causal=True) * w).sum().backward()
    for a, b in ((q, q2), (k, k2), (v, v2)):
        torch.testing.assert_close(a.grad, b.grad, atol=ATOL, rtol=0)


@pytest.mark.parametrize("is_causal", [False, True])
def test_attention_weights_are_torch_sdpa_with_identity_values(is_causal):
    q, k, _ = qkv(2, 3, 6, 8)
    eye = torch.eye(6).expand(2, 3, 6, 6)  # attention over one-hot values returns the weights
    weights = attention_weights(q, k, is_causal=is_causal)
    torch.testing.assert_close(weights, F.scaled_dot_product_attention(q, k, eye, is_causal=is_causal),
                               atol=ATOL, rtol=0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 6), atol=ATOL, rtol=0)
    if is_causal:
        assert torch.all(weights.triu(1) == 0), "causal weights must vanish above the diagonal"


def test_causal_mask_builder():
    assert causal_mask(3).tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    assert causal_mask(2, 4).tolist() == [[True, False, False, False], [True, True, False, False]]


def test_dropout():
    q, k, v = qkv(2, 2, 5, 8)
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, dropout_p=1.0), torch.zeros_like(q))
    torch.manual_seed(0)
    dropped = scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    assert not torch.allclose(dropped, scaled_dot_product_attention(q, k, v))


def test_bad_inputs_raise_clear_errors():
    q, k, v = qkv(1, 1, 3, 8)
    with pytest.raises(ValueError, match="head size"):
        scaled_dot_product_attention(q, k[..., :4], v)
    with pytest.raises(ValueError, match="not both"):
        scaled_dot_product_attention(q, k, v, attn_mask=causal_mask(3), is_causal=True)
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(10, 3)
    with pytest.raises(ValueError, match=r"\(B, T, 16\)"):
        MultiHeadAttention(16, 4)(torch.randn(2, 5, 8))


# ---------------------------------------------------------------- multi-head attention
def make_pair(d_model=16, n_heads=4, bias=True, seed=0):
    """Our MHA and torch's, with torch's packed in_proj weights copied into q/k/v_proj."""
    torch.manual_seed(seed)
    ref = nn.MultiheadAttention(d_model, n_heads, bias=bias, batch_first=True)
    if bias:  # torch initialises biases to zero; randomise them so the copy is really tested
        nn.init.normal_(ref.in_proj_bias)
        nn.init.normal_(ref.out_proj.bias)
    ours = MultiHeadAttention(d_model, n_heads, bias=bias)
    with torch.no_grad():
        for proj, w in zip((ours.q_proj, ours.k_proj, ours.v_proj), ref.in_proj_weight.chunk(3)):
            proj.weight.copy_(w)
        ours.out_proj.weight.copy_(ref.out_proj.weight)
        if bias:
            for proj, b in zip((ours.q_proj, ours.k_proj, ours.v_proj), ref.in_proj_bias.chunk(3)):
                proj.bias.copy_(b)
            ours.out_proj.bias.copy_(ref.out_proj.bias)
    return ours.eval(), ref.eval()


def torch_mha(ref, x, **kw):
    out, weights = ref(x, x, x, need_weights=True, average_attn_weights=False, **kw)
    return out, weights


@pytest.mark.parametrize("bias", [True, False])
def test_mha_matches_torch_without_mask(bias):
    ours, ref = make_pair(bias=bias)
    x = torch.randn(3, 7, 16)
    out, w = ours(x, need_weights=True)
    ref_out, ref_w = torch_mha(ref, x)
    assert out.shape == (3, 7, 16) and w.shape == (3, 4, 7, 7)
    torch.testing.assert_close(out, ref_out, atol=ATOL, rtol=0)
    torch.testing.assert_close(w, ref_w, atol=ATOL, rtol=0)


def test_mha_causal_matches_torch():
    ours, ref = make_pair()
    x = torch.randn(2, 9, 16)
    # torch's MHA: boolean True means "may NOT attend", so the causal mask is the strict upper triangle
    torch_mask = torch.ones(9, 9, dtype=torch.bool).triu(1)
    ref_out, ref_w = torch_mha(ref, x, attn_mask=torch_mask)
    for out, w in (ours(x, is_causal=True, need_weights=True),
                   ours(x, attn_mask=causal_mask(9), need_weights=True),
                   ours(x, attn_mask=~torch_mask, need_weights=True)):
        torch.testing.assert_close(out, ref_out, atol=ATOL, rtol=0)
        torch.testing.assert_close(w, ref_w, atol=ATOL, rtol=0)


def test_mha_padding_mask_matches_torch_key_padding_mask():
    ours, ref = make_pair()
    x = torch.randn(2, 6, 16)
    lengths = torch.tensor([6, 4])
    key_padding_mask = torch.arange(6)[None, :] >= lengths[:, None]  # torch: True = padding, ignore
    ref_out, ref_w = torch_mha(ref, x, key_padding_mask=key_padding_mask)
    ours_mask = ~key_padding_mask[:, None, None, :]  # ours: True = attend, broadcast over heads/queries
    out, w = ours(x, attn_mask=ours_mask, need_weights=True)
    torch.testing.assert_close(out, ref_out, atol=ATOL, rtol=0)
    torch.testing.assert_close(w, ref_w, atol=ATOL, rtol=0)
    assert torch.all(w[1, :, :, 4:] == 0), "padded keys must get zero weight"


def test_mha_float_mask_matches_torch():
    ours, ref = make_pair()
    x = torch.randn(2, 5, 16)
    bias = torch.randn(5, 5)  # a float mask is added to the scores in both APIs
    torch.testing.assert_close(ours(x, attn_mask=bias), ref(x, x, x, attn_mask=bias)[0], atol=ATOL, rtol=0)


def test_mha_gradients_match_torch():
    ours, ref = make_pair()
    x = torch.randn(2, 5, 16)
    ours(x, is_causal=True).pow(2).sum().backward()
    ref(x, x, x, attn_mask=torch.ones(5, 5, dtype=torch.bool).triu(1))[0].pow(2).sum().backward()
    torch.testing.assert_close(ours.q_proj.weight.grad, ref.in_proj_weight.grad[:16], atol=1e-4, rtol=0)
    torch.testing.assert_close(ours.out_proj.weight.grad, ref.out_proj.weight.grad, atol=1e-4, rtol=0)


def test_split_merge_heads():
    mha = MultiHeadAttention(12, 3)
    x = torch.arange(2 * 4 * 12, dtype=torch.float32).view(2, 4, 12)
    heads = mha.split_heads(x)
    assert heads.shape == (2, 3, 4, 4) and mha.head_dim == 4
    torch.testing.assert_close(heads[:, 1], x[..., 4:8], atol=0, rtol=0)  # head h owns channels h*D..(h+1)*D
    torch.testing.assert_close(mha.merge_heads(heads), x, atol=0, rtol=0)


def test_mha_dropout_only_in_training():
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4, dropout=0.5)
    assert isinstance(mha.dropout, float) and mha.dropout == 0.5
    x = torch.randn(2, 5, 16)
    mha.eval()
    torch.testing.assert_close(mha(x), mha(x))
    mha.train()
    assert not torch.allclose(mha(x), mha.eval()(x))
