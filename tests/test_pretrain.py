"""Pretraining objectives against transformers, masking statistics, the loop and the cached course model."""
import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from instructlib import models, pretrain
from instructlib.models import course
from instructlib.config import Profile
from instructlib.nn.gpt import GPTConfig, TinyGPT
from instructlib.pretrain import (IGNORE_INDEX, causal_lm_labels, causal_lm_loss, encode_documents, heldout_loss,
                                  mask_tokens, masked_lm_loss, perplexity, random_windows)

V = 97


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(seed: int = 0) -> TinyGPT:
    torch.manual_seed(seed)
    model = TinyGPT(GPTConfig(vocab_size=V, block_size=32, n_layer=2, n_head=2, n_embd=32))
    with torch.no_grad():  # larger than GPT-2's init so the loss is far from uniform
        for name, p in model.named_parameters():
            if "ln" not in name:
                p.normal_(0.0, 0.3)
    return model.eval()


def test_causal_loss_equals_gpt2_with_labels():
    model = tiny()
    ids = torch.randint(V, (3, 20), generator=torch.Generator().manual_seed(0))
    hf = model.to_hf()
    ours = causal_lm_loss(model(ids), ids)
    theirs = hf(input_ids=ids, labels=ids).loss
    assert torch.allclose(ours, theirs, atol=1e-5), (ours, theirs)


def test_causal_loss_with_padding_equals_gpt2():
    model = tiny(1)
    ids = torch.randint(3, V, (2, 12), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0  # right padding
    ids[1, 7:] = 0
    labels = causal_lm_labels(ids, mask)
    assert (labels[1, 7:] == IGNORE_INDEX).all() and (labels[0] == ids[0]).all()
    ours = causal_lm_loss(model(ids, attention_mask=mask), labels)
    theirs = model.to_hf()(input_ids=ids, attention_mask=mask, labels=labels).loss
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_causal_loss_is_the_shifted_mean_of_next_token_log_probs():
    logits = torch.randn(2, 5, V, generator=torch.Generator().manual_seed(2))
    ids = torch.randint(V, (2, 5), generator=torch.Generator().manual_seed(3))
    logp = logits.log_softmax(-1)
    manual = -torch.stack([logp[b, t, ids[b, t + 1]] for b in range(2) for t in range(4)]).mean()
    assert torch.allclose(causal_lm_loss(logits, ids), manual, atol=1e-6)
    # the unshifted loss is a different (wrong) number: position t would be asked to copy its own input
    assert not torch.allclose(F.cross_entropy(logits.reshape(-1, V), ids.reshape(-1)), manual)


def test_mask_tokens_statistics_and_specials():
    special = [0, 1, 2]
    ids = torch.randint(3, V, (400, 250), generator=torch.Generator().manual_seed(4))
    ids[:, ::10] = 0  # document separators: never masked
    inputs, labels = mask_tokens(ids, mask_token_id=2, vocab_size=V, special_ids=special,
                                 generator=torch.Generator().manual_seed(5))
    chosen = labels != IGNORE_INDEX
    maskable = ids != 0
    assert not chosen[~maskable].any() and (inputs[~maskable] == 0).all()
    assert (labels[chosen] == ids[chosen]).all() and (inputs[~chosen] == ids[~chosen]).all()
    rate = chosen.sum().item() / maskable.sum().item()
    assert abs(rate - 0.15) < 0.005, rate
    n = chosen.sum().item()
    as_mask = (inputs[chosen] == 2).sum().item() / n
    unchanged = (inputs[chosen] == ids[chosen]).sum().item() / n
    replaced = 1 - as_mask - unchanged
    assert abs(as_mask - 0.8) < 0.01 and abs(unchanged - 0.1) < 0.01 and abs(replaced - 0.1) < 0.01
    # random replacements are ordinary tokens, never specials
    assert not torch.isin(inputs[chosen & (inputs != 2)], torch.tensor(special)).any()


def test_mask_tokens_is_reproducible():
    ids = torch.randint(3, V, (4, 30), generator=torch.Generator().manual_seed(6))
    a = mask_tokens(ids, 2, V, [0, 1, 2], generator=torch.Generator().manual_seed(7))
    b = mask_tokens(ids, 2, V, [0, 1, 2], generator=torch.Generator().manual_seed(7))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_masked_loss_counts_only_masked_positions_without_shift():
    logits = torch.randn(2, 6, V, generator=torch.Generator().manual_seed(8))
    labels = torch.full((2, 6), IGNORE_INDEX)
    labels[0, 1], labels[1, 4] = 5, 9
    manual = -(logits[0, 1].log_softmax(-1)[5] + logits[1, 4].log_softmax(-1)[9]) / 2
    assert torch.allclose(masked_lm_loss(logits, labels), manual, atol=1e-6)


def test_masked_objective_sees_the_future_causal_does_not():
    model = tiny(3)
    ids = torch.randint(V, (1, 10), generator=torch.Generator().manual_seed(9))
    changed = ids.clone()
    changed[0, -1] = (ids[0, -1] + 1) % V
    assert torch.allclose(model(ids)[0, :-1], model(changed)[0, :-1], atol=1e-6)
    assert not torch.allclose(model(ids, causal=False)[0, 0], model(changed, causal=False)[0, 0], atol=1e-4)


def test_encode_documents_and_windows():
    tok = course.load_course_tokenizer("ci")
    docs = ["Hello there.", "A second one."]
    stream = encode_documents(tok, docs)
    assert stream.tolist().count(tok.eos_token_id) == 2 and stream[-1] == tok.eos_token_id
    assert tok.decode(stream) == "Hello there.<|endoftext|>A second one.<|endoftext|>"
    data = torch.arange(100)
    batch = random_windows(data, 5, 8, torch.Generator().manual_seed(0))
    assert batch.shape == (5, 8) and ((batch[:, 1:] - batch[:, :-1]) == 1).all()
    with pytest.raises(ValueError, match="block_size"):
        random_windows(data[:4], 2, 8)


def test_perplexity_equals_gpt2_loss_on_the_same_windows():
    model = tiny(4)
    data = torch.randint(V, (3 * 32 + 5,), generator=torch.Generator().manual_seed(10))
    windows = data[:96].view(3, 32)
    theirs = model.to_hf()(input_ids=windows, labels=windows).loss.item()
    assert math.isclose(heldout_loss(model, data, 32, batch_size=2), theirs, rel_tol=1e-5)
    assert math.isclose(perplexity(model, data, 32), math.exp(theirs), rel_tol=1e-5)


def test_training_reduces_loss_and_is_deterministic():
    tok = course.load_course_tokenizer("ci")
    data = encode_documents(tok, pretrain.load_corpus("train", 200))
    cfg = replace(pretrain.pretrain_config(Profile("ci")), steps=12, eval_every=6)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = TinyGPT(cfg.gpt_config(len(tok)))
        runs.append((pretrain.train(model, data, cfg, heldout=data[:2000], progress=False), model))
    (h1, m1), (h2, m2) = runs
    assert [r["loss"] for r in h1.train] == [r["loss"] for r in h2.train]
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    assert h1.eval[-1]["val_loss"] < h1.eval[0]["val_loss"] - 0.5


def test_masked_training_runs():
    tok = course.load_course_tokenizer("ci")
    data = encode_documents(tok, pretrain.load_corpus("train", 100))
    cfg = replace(pretrain.pretrain_config(Profile("ci")), steps=8, eval_every=4)
    model = TinyGPT(cfg.gpt_config(len(tok)))
    specials = [tok.eos_token_id, tok.pad_token_id, tok.mask_token_id]
    h = pretrain.train(model, data, cfg, objective="masked", heldout=data[:2000], progress=False,
                       mask_token_id=tok.mask_token_id, special_ids=specials)
    assert h.eval[-1]["val_loss"] < h.eval[0]["val_loss"]
    with pytest.raises(ValueError, match="objective"):
        pretrain.batch_loss(model, data[:64].view(1, 64), "prefix")


def test_course_model_trains_caches_and_reloads(tmp_path, monkeypatch):
    monkeypatch.setenv("INSTRUCTLIB_CACHE", str(tmp_path))
    monkeypatch.setenv("INSTRUCTLIB_PROFILE", "ci")
    model = models.load_model("tinygpt")
    tok = models.load_tokenizer("tinygpt")
    dirs = sorted(p.name for p in tmp_path.iterdir())
    assert len(dirs) == 2 and dirs[0].startswith("tinygpt-ci-") and dirs[1].startswith("tinygpt-tokenizer-ci-")
    again = course.load_course_model("ci")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    assert sorted(p.name for p in tmp_path.iterdir()) == dirs, "second load must not retrain"
    assert model.config.vocab_size == len(tok) and not model.training
    meta = course.course_model_meta("ci")
    assert meta["parameters"] == model.num_parameters() and meta["heldout_perplexity"] < len(tok)
    ids = tok("Once upon a time", return_tensors="pt").input_ids
    out = model.generate(ids, 5, temperature=0)
    assert out.shape == (1, ids.shape[1] + 5)


def test_recipe_change_gives_a_new_cache_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("INSTRUCTLIB_CACHE", str(tmp_path))
    before = course.course_tokenizer_dir("ci")
    original = pretrain.pretrain_config
    monkeypatch.setattr(course, "pretrain_config", lambda p=None: replace(original(p), vocab_size=300))
    assert course.course_tokenizer_dir("ci") != before
    with pytest.raises(ValueError, match="laptop"):
        course.load_course_model("laptop")
