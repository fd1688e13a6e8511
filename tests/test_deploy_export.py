"""Chapter 10 export: LoRA merges (peft vs from scratch), int8 dynamic quantization, GGUF round trip."""
import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from instructlib.deploy.export import (GGUF_TYPES, ExportError, export_gguf, load_gguf, max_weight_difference,
                                       merge_peft, merge_scratch, quantize_int8, scratch_from_peft,
                                       state_dict_bytes)
from instructlib.models import LLM
from instructlib.tokenization import train_bpe

TEXTS = ["Reverse the order of the words.\n\napple bread chair", "Add the two numbers.\n\n12 45",
         "What is the capital of this country?\n\nFrance", "Sort the numbers from smallest to largest.\n\n9 3 71"] * 40


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe(TEXTS, 320, min_frequency=1, model_max_length=64)


def gpt2(tokenizer, activation="gelu_new"):
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=64, n_layer=2, n_head=4,
                                      activation_function=activation, eos_token_id=tokenizer.eos_token_id,
                                      bos_token_id=tokenizer.eos_token_id,
                                      pad_token_id=tokenizer.pad_token_id)).eval()


def llama(tokenizer):
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                                        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                        max_position_embeddings=64, eos_token_id=tokenizer.eos_token_id,
                                        bos_token_id=tokenizer.eos_token_id,
                                        pad_token_id=tokenizer.pad_token_id)).eval()


def trained_peft(base, targets, fan_in_fan_out):
    """A peft LoRA model whose B matrices are non-zero (as after training)."""
    model = get_peft_model(copy.deepcopy(base), LoraConfig(r=4, lora_alpha=8, target_modules=targets,
                                                           lora_dropout=0.0, fan_in_fan_out=fan_in_fan_out))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model.eval()


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_scratch_merge_equals_peft_merge(tokenizer, kind):
    base = gpt2(tokenizer) if kind == "gpt2" else llama(tokenizer)
    targets = ["c_attn", "c_fc"] if kind == "gpt2" else ["q_proj", "v_proj", "down_proj"]
    peft_model = trained_peft(base, targets, kind == "gpt2")
    theirs = merge_peft(peft_model)
    ours = merge_scratch(scratch_from_peft(peft_model))
    assert type(ours) is type(base) and type(theirs) is type(base)
    assert max_weight_difference(ours, theirs) < 1e-6
    assert max_weight_difference(ours, base) > 1e-3, "the adapter should have changed the weights"
    ids = tokenizer(TEXTS[:2], return_tensors="pt", padding=True)
    with torch.no_grad():
        torch.testing.assert_close(ours(**ids).logits, peft_model(**ids).logits, rtol=1e-4, atol=1e-4)
    assert not any("lora" in n for n, _ in ours.named_parameters())


def test_int8_quantization_is_smaller_and_close(tokenizer):
    base = gpt2(tokenizer)
    q = quantize_int8(base)
    assert state_dict_bytes(q) < 0.6 * state_dict_bytes(base)
    ids = tokenizer(TEXTS[:4], return_tensors="pt", padding=True)
    with torch.no_grad():
        a, b = base(**ids).logits, q(**ids).logits
    # stated tolerance: int8 weights (one scale per tensor) keep logits within 5 % of their range here
    assert (a - b).abs().max().item() < 0.05 * (a.max() - a.min()).item()
    assert (a - b).abs().max().item() > 0, "quantization should change something"
    answers = LLM.wrap(q, tokenizer).complete(["Add the two numbers."], max_new_tokens=4, progress=False)
    assert isinstance(answers[0], str)


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_gguf_f32_round_trip_is_exact(tokenizer, kind, tmp_path):
    model = gpt2(tokenizer) if kind == "gpt2" else llama(tokenizer)
    path = export_gguf(model, tokenizer, tmp_path / "m.gguf", "F32")
    back, back_tok = load_gguf(path)
    assert type(back) is type(model)
    prompts = [t.split("\n")[0] for t in TEXTS[:4]]
    assert back_tok(prompts)["input_ids"] == tokenizer(prompts)["input_ids"]
    assert back_tok.chat_template == tokenizer.chat_template
    ids = tokenizer(prompts, return_tensors="pt", padding=True)
    with torch.no_grad():
        torch.testing.assert_close(back(**ids).logits, model(**ids).logits, rtol=1e-5, atol=1e-5)
    ours = LLM.wrap(model, tokenizer).complete(prompts, max_new_tokens=8, progress=False)
    theirs = LLM.wrap(back, back_tok).complete(prompts, max_new_tokens=8, progress=False)
    assert ours == theirs


@pytest.mark.parametrize("qtype,tolerance", [("F16", 1e-2), ("Q8_0", 5e-2), ("Q4_0", 0.5)])
def test_gguf_quantized_types_within_tolerance(tokenizer, tmp_path, qtype, tolerance):
    model = gpt2(tokenizer)
    path = export_gguf(model, tokenizer, tmp_path / f"m-{qtype}.gguf", qtype)
    f32 = export_gguf(model, tokenizer, tmp_path / "m-F32.gguf", "F32")
    assert path.stat().st_size < f32.stat().st_size
    back, _ = load_gguf(path)
    ids = tokenizer(TEXTS[:2], return_tensors="pt", padding=True)
    with torch.no_grad():
        diff = (back(**ids).logits - model(**ids).logits).abs().max().item()
    assert 0 < diff < tolerance


def test_gguf_refuses_unsupported(tokenizer, tmp_path):
    from transformers import BertConfig, BertLMHeadModel

    with pytest.raises(ExportError, match="supports model types"):
        export_gguf(BertLMHeadModel(BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1,
                                               num_attention_heads=2, intermediate_size=64, is_decoder=True)),
                    tokenizer, tmp_path / "x.gguf")
    with pytest.raises(ExportError, match="Q8_0"):
        export_gguf(gpt2(tokenizer), tokenizer, tmp_path / "x.gguf", "Q2_K")
    with pytest.raises(ExportError, match="merge"):
        export_gguf(trained_peft(gpt2(tokenizer), ["c_attn"], True), tokenizer, tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()
    assert set(GGUF_TYPES) == {"F32", "F16", "Q8_0", "Q4_0"}
