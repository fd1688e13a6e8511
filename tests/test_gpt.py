"""TinyGPT against transformers' GPT2LMHeadModel: logits, conversion, KV-cache and batched generation."""
import pytest
import torch

from instructlib.nn.attention import scaled_dot_product_attention
from instructlib.nn.gpt import GPTConfig, TinyGPT, position_ids_from_mask

V, BLOCK = 61, 48


def tiny(seed: int = 0, **overrides) -> TinyGPT:
    """A small random TinyGPT whose greedy continuations vary (weights larger than GPT-2's init)."""
    torch.manual_seed(seed)
    config = dict(vocab_size=V, block_size=BLOCK, n_layer=2, n_head=4, n_embd=32)
    model = TinyGPT(GPTConfig(**{**config, **overrides}))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln" not in name:  # with 0.02 a random model repeats one token forever
                p.normal_(0.0, 1.0 if name.startswith(("wte", "wpe")) else 0.5)
    return model.eval()


def left_pad(rows: list[list[int]], pad: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded (B, T) ids and their 1/0 attention mask."""
    t = max(map(len, rows))
    ids = torch.tensor([[pad] * (t - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (t - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


pytestmark = pytest.mark.usefixtures("one_thread")


PROMPTS = [[5, 17, 3, 40, 22, 9, 11], [8, 1], [30, 31, 32, 33]]


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="n_embd=30 is not divisible by n_head=4"):
        GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=4, n_embd=30)
    with pytest.raises(ValueError, match="GPTConfig.block_size"):
        GPTConfig(vocab_size=10, block_size=0, n_layer=1, n_head=1, n_embd=4)
    with pytest.raises(ValueError, match="GPTConfig.activation"):
        GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=1, n_embd=4, activation="relu")


def test_forward_shapes_tied_embeddings_and_parameter_count():
    model = tiny()
    x = torch.randint(0, V, (2, 9))
    assert model(x).shape == (2, 9, V)
    assert model.lm_head.weight is model.wte.weight
    c = model.config
    per_layer = 12 * c.n_embd ** 2 + 13 * c.n_embd  # qkv + out + MLP weights and biases, two layer norms
    expected = V * c.n_embd + BLOCK * c.n_embd + c.n_layer * per_layer + 2 * c.n_embd
    assert model.num_parameters() == expected == model.to_hf().num_parameters()
    with pytest.raises(ValueError, match="block_size=48"):
        model(torch.zeros(1, BLOCK + 1, dtype=torch.long))


@pytest.mark.parametrize("activation", ["gelu", "gelu_tanh"])
def test_logits_match_gpt2lmheadmodel(activation):
    model = tiny(activation=activation)
    hf = model.to_hf().eval()
    assert hf.config.n_positions == BLOCK and hf.lm_head.weight is hf.transformer.wte.weight
    x = torch.randint(0, V, (3, 20))
    torch.testing.assert_close(model(x), hf(x).logits, atol=1e-4, rtol=0)


def test_logits_match_with_left_padding_and_padding_does_not_change_real_tokens():
    model = tiny()
    hf = model.to_hf().eval()
    ids, mask = left_pad(PROMPTS)
    ours = model(ids, attention_mask=mask)
    theirs = hf(ids, attention_mask=mask, position_ids=position_ids_from_mask(mask)).logits
    real = mask.bool()
    assert torch.isfinite(ours).all()
    torch.testing.assert_close(ours[real], theirs[real], atol=1e-4, rtol=0)
    for i, row in enumerate(PROMPTS):  # each row alone, unpadded, gives the same logits
        alone = model(torch.tensor([row]))[0]
        torch.testing.assert_close(ours[i, -len(row):], alone, atol=1e-4, rtol=0)


def test_from_hf_round_trip():
    model = tiny()
    back = TinyGPT.from_hf(model.to_hf())
    assert back.config == model.config
    for (name, a), (_, b) in zip(model.state_dict().items(), back.state_dict().items()):
        torch.testing.assert_close(a, b, msg=name)
    assert back.lm_head.weight is back.wte.weight


def test_from_hf_of_a_fresh_gpt2_model():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(1)
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=V, n_positions=BLOCK, n_embd=24, n_layer=2, n_head=3,
                                    bos_token_id=0, eos_token_id=0)).eval()  # default gelu_new
    model = TinyGPT.from_hf(hf).eval()
    assert model.config.activation == "gelu_tanh"
    x = torch.randint(0, V, (2, 12))
    torch.testing.assert_close(model(x), hf(x).logits, atol=1e-4, rtol=0)
    hf.config.scale_attn_by_inverse_layer_idx = True
    with pytest.raises(ValueError, match="scale_attn_by_inverse_layer_idx"):
        TinyGPT.from_hf(hf)


def test_no_bias_model_exports_with_zero_biases():
    model = tiny(bias=False)
    assert not any(name.endswith("bias") for name, _ in model.named_parameters())
    x = torch.randint(0, V, (2, 10))
    torch.testing.assert_close(model(x), model.to_hf().eval()(x).logits, atol=1e-4, rtol=0)


def test_from_scratch_attention_gives_the_same_output():
    model = tiny()
    ids, mask = left_pad(PROMPTS)
    x = torch.randint(0, V, (2, 15))
    fused = model(x), model(ids, attention_mask=mask), model(x, causal=False)
    for block in model.h:
        block.attn.attention_fn = scaled_dot_product_attention
    scratch = model(x), model(ids, attention_mask=mask), model(x, causal=False)
    for a, b in zip(fused, scratch):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_packed_qkv_projection_gives_the_same_output():
    model = tiny()
    x = torch.randint(0, V, (2, 15))
    separate = model(x)
    for block in model.h:
        block.attn.pack_qkv()
    torch.testing.assert_close(model(x), separate, atol=1e-5, rtol=1e-5)
    model.generate(x, 2, temperature=0)
    assert all(block.attn.packed_qkv is None for block in model.h), "generate must unpack what it packed"


def test_causal_false_lets_position_zero_see_the_future():
    model = tiny()
    x = torch.randint(0, V, (1, 12))
    y = x.clone()
    y[0, -1] = (x[0, -1] + 1) % V  # change only the last token
    causal_x, causal_y = model(x), model(y)
    torch.testing.assert_close(causal_x[:, :-1], causal_y[:, :-1])  # the past never sees the future
    bi_x, bi_y = model(x, causal=False), model(y, causal=False)
    assert not torch.allclose(bi_x[:, 0], bi_y[:, 0])  # bidirectional: position 0 does
    assert not torch.allclose(bi_x, causal_x)


def test_cached_forward_matches_full_forward():
    model = tiny()
    x = torch.randint(0, V, (2, 16))
    full = model(x)
    out = model(x[:, :9], use_cache=True)
    assert len(out.past_key_values) == model.config.n_layer
    assert out.past_key_values[0][0].shape == (2, 4, 9, 8)
    past_k = out.past_key_values[1][0].clone()
    step = model(x[:, 9:], past_key_values=out.past_key_values, use_cache=True)  # several new tokens at once
    torch.testing.assert_close(torch.cat([out.logits, step.logits], dim=1), full, atol=1e-4, rtol=0)
    assert step.past_key_values.seq_len == 16
    k, v = step.past_key_values[1]  # the cache holds the past keys followed by the new ones
    _, fresh = model(x, use_cache=True)
    torch.testing.assert_close(k[:, :, :9], past_k)
    torch.testing.assert_close((k, v), fresh[1], atol=1e-5, rtol=0)


def test_kv_cache_is_bounded_by_block_size():
    model = tiny()
    out = model(torch.zeros(1, BLOCK, dtype=torch.long), use_cache=True)
    with pytest.raises(ValueError, match="block_size=48"):
        model(torch.zeros(1, 1, dtype=torch.long), past_key_values=out.past_key_values, use_cache=True)


def test_greedy_generation_identical_with_and_without_cache():
    model = tiny()
    x = torch.tensor([PROMPTS[0]])
    cached = model.generate(x, 25, temperature=0)
    uncached = model.generate(x, 25, temperature=0, use_cache=False)
    assert cached.shape == (1, len(PROMPTS[0]) + 25)
    assert torch.equal(cached, uncached)
    assert cached[0, len(PROMPTS[0]):].unique().numel() > 3, "degenerate test model"


def test_batched_left_padded_generation():
    model = tiny()
    ids, mask = left_pad(PROMPTS)
    cached = model.generate(ids, 15, temperature=0, attention_mask=mask)
    uncached = model.generate(ids, 15, temperature=0, attention_mask=mask, use_cache=False)
    assert torch.equal(cached, uncached)
    for i, row in enumerate(PROMPTS):  # padding does not change what a row generates
        alone = model.generate(torch.tensor([row]), 15, temperature=0)
        assert torch.equal(cached[i, ids.shape[1]:], alone[0, len(row):]), f"row {i}"


def test_greedy_tokens_equal_hf_generate():
    model = tiny()
    hf = model.to_hf().eval()
    ids, mask = left_pad(PROMPTS)
    ours = model.generate(ids, 20, temperature=0, attention_mask=mask)
    theirs = hf.generate(ids, attention_mask=mask, max_new_tokens=20, do_sample=False, pad_token_id=0)
    assert torch.equal(ours, theirs)


def test_eos_stops_each_row_and_pads():
    model = tiny()
    ids, mask = left_pad(PROMPTS)
    free = model.generate(ids, 12, temperature=0, attention_mask=mask)
    eos = int(free[0, ids.shape[1] + 2])  # row 0 produces this token at its third step
    out = model.generate(ids, 12, temperature=0, attention_mask=mask, eos_token_id=eos, pad_token_id=V - 1)
    hf = model.to_hf().eval().generate(ids, attention_mask=mask, max_new_tokens=12, do_sample=False,
                                       eos_token_id=eos, pad_token_id=V - 1)
    assert torch.equal(out, hf)
    for row, new in zip(free[:, ids.shape[1]:], out[:, ids.shape[1]:]):
        hits = (row == eos).nonzero()
        stop = int(hits[0]) + 1 if len(hits) else len(new)
        assert torch.equal(new[:stop], row[:stop])
        assert (new[stop:] == V - 1).all()
    everyone = model.generate(torch.tensor([PROMPTS[0]]), 12, temperature=0, eos_token_id=eos)
    first_eos = int((free[0, ids.shape[1]:] == eos).nonzero()[0]) + 1  # row 0 is the longest prompt
    assert everyone.shape[1] == len(PROMPTS[0]) + first_eos, "generation stops once every row finished"


def test_generation_beyond_block_size_crops_context():
    model = tiny()
    x = torch.tensor([PROMPTS[0]])
    n = BLOCK + 10 - x.shape[1]
    cached = model.generate(x, n, temperature=0)
    assert cached.shape[1] == BLOCK + 10
    assert torch.equal(cached, model.generate(x, n, temperature=0, use_cache=False))


def test_seeded_sampling_is_reproducible():
    model = tiny()
    x = torch.tensor([PROMPTS[0], PROMPTS[0]])
    draws = [model.generate(x, 20, temperature=1.0, top_k=10, top_p=0.9,
                            generator=torch.Generator().manual_seed(s)) for s in (7, 7, 8)]
    assert torch.equal(draws[0], draws[1])
    assert not torch.equal(draws[0], draws[2])
    assert not torch.equal(draws[0][0], draws[0][1]), "rows sample independently"
    uncached = model.generate(x, 20, temperature=1.0, top_k=10, top_p=0.9, use_cache=False,
                              generator=torch.Generator().manual_seed(7))
    assert torch.equal(draws[0], uncached)


def test_generate_restores_training_mode():
    model = tiny().train()
    model.generate(torch.tensor([[1, 2]]), 2, temperature=0)
    assert model.training
