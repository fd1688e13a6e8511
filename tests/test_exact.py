"""Teacher-forced greedy exact match equals generation-based exact match, item by item, for two models."""
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from instructlib.data.collate import DataCollatorForInstructions, encode_dataset
from instructlib.data.records import Record
from instructlib.data.verifiable import make_examples
from instructlib.data.prompts import render_for_inference
from instructlib.models import load_tokenizer
from instructlib.nn.gpt import GPTConfig, TinyGPT
from instructlib.train import TrainConfig, train
from instructlib.train.exact import greedy_exact

FAMILIES = ["count_words", "comma_list", "repeat_word", "first_last_word"]
MAX_NEW = 24


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("tinygpt")


def _briefly_tuned(model, tok):
    """A few SFT steps from random weights: the model stops on its own and gets some answers right (not all)."""
    data, _ = encode_dataset([e.record for e in make_examples("train", 40, seed=0, families=FAMILIES)], tok, 128, "chat")
    train(model, data, DataCollatorForInstructions(tok),
          TrainConfig(max_steps=100, batch_size=16, lr=1e-2, warmup_steps=5, seed=0, progress=False), device="cpu")
    return model.eval()


def _models(tok):
    torch.manual_seed(0)
    tiny = TinyGPT(GPTConfig(vocab_size=len(tok), block_size=128, n_layer=2, n_head=2, n_embd=64))
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                         max_position_embeddings=128, pad_token_id=tok.pad_token_id,
                                         eos_token_id=tok.eos_token_id, bos_token_id=tok.eos_token_id))
    return {"tinygpt": _briefly_tuned(tiny, tok), "llama": _briefly_tuned(llama, tok)}


@torch.no_grad()
def _greedy_ids(model, ids, stop_ids):
    """Plain greedy decoding, one token per full forward pass: the definition, independent of the library."""
    out = []
    for _ in range(MAX_NEW):
        logits = model(input_ids=torch.tensor([ids + out]))
        nxt = int((logits.logits if hasattr(logits, "logits") else logits)[0, -1].argmax())
        if nxt in stop_ids:
            return out, True
        out.append(nxt)
    return out, False


@pytest.fixture(scope="module")
def models(tok):
    return _models(tok)


@pytest.mark.parametrize("name", ["tinygpt", "llama"])
def test_teacher_forced_exact_match_equals_generation_on_500_items(models, tok, name, one_thread):
    model = models[name]
    stop_ids = {tok.eos_token_id} | {i for i in range(len(tok)) if tok.decode([i]).lstrip(" ").startswith("\n")}
    items, generated, odd = [], [], 0
    for i, e in enumerate(make_examples("test", 140, seed=0, families=FAMILIES)):  # 560 items
        ids = tok(render_for_inference(e.record, "chat", tok), add_special_tokens=False)["input_ids"]
        new, stopped = _greedy_ids(model, ids, stop_ids)
        text = tok.decode(new)
        if stopped and new != tok(text, add_special_tokens=False)["input_ids"]:
            odd += 1  # spelled with non-canonical tokens: generation and teacher forcing may disagree
            continue
        # Half the references are the model's own finished answers (so many items are right), half the true ones.
        gold = text.strip() if i % 2 and stopped and text.strip() else e.record.output
        items.append(Record(e.record.instruction, e.record.input, gold))
        generated.append(stopped and text.strip() == gold)
    forced = greedy_exact(model, tok, items, "chat", batch_size=37)
    assert len(items) >= 500 and odd < 0.05 * (len(items) + odd), (len(items), odd)
    assert 0.2 < sum(generated) / len(items) < 0.95, "both right and wrong items, or the test shows nothing"
    assert forced == generated


def test_an_answer_that_does_not_fit_counts_as_wrong(models, tok):
    long = Record("Repeat the word as many times as the number says.", "cat 3", " ".join(["cat"] * 200))
    assert greedy_exact(models["tinygpt"], tok, [long], "chat") == [False]


def test_state_is_restored(models, tok):
    model = models["tinygpt"]
    model.train()
    greedy_exact(model, tok, [Record("Count the words in the input.", "a b", "2")], "chat")
    assert model.training
    model.eval()
