"""Feed-forward, positional encodings and the pre-LN block against formulas and torch layers."""
import math

import pytest
import torch
from torch import nn

from instructlib.nn.attention import causal_mask
from instructlib.nn.blocks import (FeedForward, LearnedPositionalEmbedding, SinusoidalPositionalEncoding,
                                   TransformerBlock, sinusoidal_table)


@pytest.mark.parametrize("d_model", [4, 7, 16])
def test_sinusoidal_table_matches_formula(d_model):
    table = sinusoidal_table(50, d_model)
    expected = torch.tensor([[math.sin(p / 10000 ** (i / d_model)) if i % 2 == 0
                              else math.cos(p / 10000 ** ((i - 1) / d_model))
                              for i in range(d_model)] for p in range(50)])
    torch.testing.assert_close(table, expected, atol=1e-5, rtol=0)


def test_sinusoidal_encoding_adds_table_with_offset():
    pe = SinusoidalPositionalEncoding(8, max_len=20)
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(pe(x), x + sinusoidal_table(20, 8)[:5])
    torch.testing.assert_close(pe(x, offset=3), x + sinusoidal_table(20, 8)[3:8])
    assert "pe" not in pe.state_dict(), "a fixed table should not be saved as a weight"
    with pytest.raises(ValueError, match="max_len=20"):
        pe(torch.randn(1, 21, 8))


def test_learned_positional_embedding():
    emb = LearnedPositionalEmbedding(max_len=10, d_model=6)
    x = torch.zeros(2, 4, 6)
    torch.testing.assert_close(emb(x), emb.emb.weight[:4].expand(2, 4, 6))
    torch.testing.assert_close(emb(x, offset=6)[0], emb.emb.weight[6:10])
    assert sum(p.numel() for p in emb.parameters()) == 60
    with pytest.raises(ValueError, match="max_len=10"):
        emb(x, offset=7)


def test_feed_forward_is_gelu_mlp():
    ff = FeedForward(8, 32).eval()
    x = torch.randn(3, 4, 8)
    expected = nn.functional.gelu(x @ ff.fc1.weight.T + ff.fc1.bias) @ ff.fc2.weight.T + ff.fc2.bias
    torch.testing.assert_close(ff(x), expected, atol=1e-5, rtol=0)


def block_pair(d_model=16, n_heads=4, d_ff=64, seed=0):
    """Our block and torch's pre-LN TransformerEncoderLayer with the same weights."""
    torch.manual_seed(seed)
    ref = nn.TransformerEncoderLayer(d_model, n_heads, d_ff, dropout=0.0, activation="gelu",
                                     batch_first=True, norm_first=True)
    for p in ref.parameters():  # randomise everything, including LayerNorm and zero-initialised biases
        nn.init.normal_(p, std=0.3)
    ours = TransformerBlock(d_model, n_heads, d_ff)
    with torch.no_grad():
        for proj, w, b in zip((ours.attn.q_proj, ours.attn.k_proj, ours.attn.v_proj),
                              ref.self_attn.in_proj_weight.chunk(3), ref.self_attn.in_proj_bias.chunk(3)):
            proj.weight.copy_(w)
            proj.bias.copy_(b)
        pairs = [(ours.attn.out_proj, ref.self_attn.out_proj), (ours.ffn.fc1, ref.linear1),
                 (ours.ffn.fc2, ref.linear2), (ours.ln1, ref.norm1), (ours.ln2, ref.norm2)]
        for mine, theirs in pairs:
            mine.load_state_dict(theirs.state_dict())
    return ours.eval(), ref.eval()


def test_pre_ln_block_matches_torch_encoder_layer():
    ours, ref = block_pair()
    x = torch.randn(2, 7, 16)
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=0)


def test_pre_ln_block_causal_matches_torch():
    ours, ref = block_pair()
    x = torch.randn(2, 7, 16)
    torch_mask = ~causal_mask(7)  # torch: True = blocked
    torch.testing.assert_close(ours(x, is_causal=True), ref(x, src_mask=torch_mask), atol=1e-5, rtol=0)


def test_pre_ln_block_padding_matches_torch():
    ours, ref = block_pair()
    x = torch.randn(2, 6, 16, requires_grad=True)  # grad keeps torch off its fast path (zeroes padding)
    pad = torch.tensor([[False] * 6, [False] * 4 + [True] * 2])
    torch.testing.assert_close(ours(x, attn_mask=~pad[:, None, None, :]), ref(x, src_key_padding_mask=pad),
                               atol=1e-5, rtol=0)


def test_block_is_residual_and_pre_ln():
    ours, _ = block_pair()
    x = torch.randn(1, 3, 16)
    h = x + ours.attn(ours.ln1(x))
    torch.testing.assert_close(ours(x), h + ours.ffn(ours.ln2(h)), atol=1e-6, rtol=0)
