"""instructlib.nn.lora against peft's LoRA on the same base weights and the same adapter weights."""
import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from instructlib.nn.lora import (LoRALinear, count_parameters, inject_lora, lora_layers, merge_lora,
                                 unmerge_lora)


def tiny_llama():
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2,
                                        max_position_embeddings=32)).eval()


def tiny_gpt2():
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=4,
                                      bos_token_id=0, eos_token_id=0)).eval()


CASES = [(tiny_llama, ["q_proj", "v_proj"]), (tiny_gpt2, ["c_attn", "c_fc"])]


def ours_and_peft(make, targets, r=4, alpha=8):
    """Our LoRA and peft's on copies of one base model, with the same random (non-zero) A and B."""
    base = make()
    ours = copy.deepcopy(base)
    names = inject_lora(ours, targets, r=r, alpha=alpha)
    theirs = get_peft_model(copy.deepcopy(base), LoraConfig(r=r, lora_alpha=alpha, target_modules=targets,
                                                            lora_dropout=0.0,
                                                            fan_in_fan_out=make is tiny_gpt2))
    g = torch.Generator().manual_seed(1)
    peft_modules = dict(theirs.base_model.model.named_modules())
    for name in names:
        layer = ours.get_submodule(name)
        layer.lora_B.data = torch.randn(layer.lora_B.shape, generator=g) * 0.1  # B=0 would make parity trivial
        peft_layer = peft_modules[name]
        peft_layer.lora_A["default"].weight.data.copy_(layer.lora_A)
        peft_layer.lora_B["default"].weight.data.copy_(layer.lora_B)
    return base, ours, theirs, names


@pytest.mark.parametrize("make,targets", CASES, ids=["llama-Linear", "gpt2-Conv1D"])
def test_outputs_equal_peft(make, targets):
    base, ours, theirs, names = ours_and_peft(make, targets)
    ids = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        a, b, c = ours(ids).logits, theirs(input_ids=ids).logits, base(ids).logits
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert not torch.allclose(a, c, atol=1e-3), "the adapters should change the output"
    assert len(names) == 4


@pytest.mark.parametrize("make,targets", CASES, ids=["llama-Linear", "gpt2-Conv1D"])
def test_trainable_count_equals_peft(make, targets):
    _, ours, theirs, _ = ours_and_peft(make, targets)
    trainable, total = count_parameters(ours)
    peft_trainable, peft_total = theirs.get_nb_trainable_parameters()
    assert (trainable, total) == (peft_trainable, peft_total)
    assert all(("lora_" in n) == p.requires_grad for n, p in ours.named_parameters())


@pytest.mark.parametrize("make,targets", CASES, ids=["llama-Linear", "gpt2-Conv1D"])
def test_merge_equals_peft_merge_and_unmerge_round_trips(make, targets):
    _, ours, theirs, _ = ours_and_peft(make, targets)
    ids = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(3))
    before = {n: p.detach().clone() for n, p in ours.named_parameters() if "lora_" not in n}
    with torch.no_grad():
        unmerged = ours(ids).logits
        merge_lora(ours)
        merged = ours(ids).logits
        peft_merged = theirs.merge_and_unload()(ids).logits
    assert all(layer.merged for layer in lora_layers(ours))
    torch.testing.assert_close(merged, unmerged, rtol=0, atol=1e-5)
    torch.testing.assert_close(merged, peft_merged, rtol=0, atol=1e-6)
    changed = [n for n, p in ours.named_parameters() if n in before and not torch.equal(p, before[n])]
    assert changed, "merging should modify the base weights"
    unmerge_lora(ours)
    for n, p in ours.named_parameters():
        if n in before:
            torch.testing.assert_close(p, before[n], rtol=0, atol=1e-6)


def test_fresh_adapter_is_identity_and_initialised_like_peft():
    torch.manual_seed(0)
    base = torch.nn.Linear(16, 8)
    layer = LoRALinear(copy.deepcopy(base), r=4, alpha=8)
    x = torch.randn(3, 16)
    assert torch.equal(layer(x), base(x)), "B starts at zero: the adapted layer starts equal to the base"
    assert layer.lora_A.shape == (4, 16) and layer.lora_B.shape == (8, 4)
    bound = 1 / 16 ** 0.5  # kaiming_uniform(a=sqrt(5)) on fan_in=16
    assert layer.lora_A.abs().max() <= bound and layer.lora_A.std() > bound / 4
    assert not layer.base.weight.requires_grad and layer.scaling == 2.0


def test_gradients_reach_only_the_adapter():
    model = tiny_llama()
    inject_lora(model, ["q_proj"], r=2)
    ids = torch.randint(0, 64, (2, 8))
    model(ids, labels=ids).loss.backward()
    grads = {n for n, p in model.named_parameters() if p.grad is not None}
    assert grads and all("lora_" in n for n in grads)
    assert any("lora_A" in n for n in grads) and any("lora_B" in n for n in grads)


def test_bad_targets_and_bad_rank_are_clear_errors():
    with pytest.raises(ValueError, match="no_such_proj"):
        inject_lora(tiny_llama(), ["no_such_proj"])
    with pytest.raises(ValueError, match="rank"):
        LoRALinear(torch.nn.Linear(4, 4), r=0)
    with pytest.raises(TypeError, match="Embedding"):
        LoRALinear(torch.nn.Embedding(4, 4))


def test_peft_lora_trains_in_the_loop_with_packing_under_bf16():
    """Chapter 05's gpu recipe (peft LoRA on a Llama-architecture model, packed batches, bf16 autocast),
    run on CPU with a tiny random model: the loss falls and only the adapters change."""
    from instructlib.data.collate import DataCollatorForInstructions
    from instructlib.train import TrainConfig, train
    from instructlib.train.__main__ import tiny_random_setup

    _, examples = tiny_random_setup(n_examples=32, vocab=64)
    model = get_peft_model(tiny_llama().train(), LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                                                            target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    collate = DataCollatorForInstructions(pad_token_id=0, packing=True, max_length=32)
    result = train(model, examples, collate, TrainConfig(max_steps=12, batch_size=8, lr=2e-2, precision="bf16",
                                                         progress=False), device="cpu")
    curve = [r["loss"] for r in result.history.train]
    assert sum(curve[-3:]) < sum(curve[:3])
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in n for n in changed)
    assert any("lora_A" in n for n in changed) and any("lora_B" in n for n in changed)
