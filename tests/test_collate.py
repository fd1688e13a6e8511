"""The label mask, truncation, padding, length grouping and packing (instructlib.data.collate)."""
import warnings

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from instructlib.data import Record
from instructlib.data.collate import (IGNORE_INDEX, DataCollatorForInstructions, encode_dataset,
                                      encode_for_training, length_grouped_batches, pack_examples)
from instructlib.data.prompts import render_for_training
from instructlib.models import load_tokenizer
from instructlib.train.loop import masked_loss_sum

RECORDS = [Record("Reverse the order of the words.", "red green blue", "blue green red"),
           Record("Name the capital of France.", "", "Paris"),
           Record("Add the two numbers.", "12 30", "42")]


@pytest.fixture(scope="module", params=["tinygpt", "smollm2-135m-instruct"])
def tokenizer(request):
    return load_tokenizer(request.param)


@pytest.mark.parametrize("template", ["alpaca", "chat"])
def test_only_the_response_and_eos_are_learned(tokenizer, template):
    for record in RECORDS:
        ex = encode_for_training(record, tokenizer, max_length=512, template=template)
        prompt, response = render_for_training(record, template, tokenizer)
        ids, labels = ex["input_ids"], ex["labels"]
        assert len(ids) == len(labels)
        n_prompt = labels.index(next(l for l in labels if l != IGNORE_INDEX))
        assert all(l == IGNORE_INDEX for l in labels[:n_prompt]), "every prompt token is masked"
        assert labels[n_prompt:] == ids[n_prompt:], "every response token is learned"
        assert ids[-1] == tokenizer.eos_token_id and labels[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(ids[:n_prompt]) == prompt, "the masked part is exactly the prompt"
        assert tokenizer.decode(ids[n_prompt:-1]).strip() == response.strip()
        assert ids[:n_prompt] == tokenizer(prompt, add_special_tokens=False)["input_ids"], \
            "the training prompt ids are the ids the model sees at inference"


def test_truncation_cuts_the_response_end_and_drops_what_cannot_fit(tokenizer):
    record = RECORDS[0]
    full = encode_for_training(record, tokenizer, max_length=512)
    n_prompt = full["labels"].count(IGNORE_INDEX)
    cut = encode_for_training(record, tokenizer, max_length=n_prompt + 1)
    assert cut["input_ids"] == full["input_ids"][:n_prompt + 1]
    assert sum(l != IGNORE_INDEX for l in cut["labels"]) == 1
    with pytest.warns(UserWarning, match="dropped"):
        assert encode_for_training(record, tokenizer, max_length=n_prompt) is None
    with pytest.warns(UserWarning, match="2 responses truncated, 0 examples dropped"):
        examples, stats = encode_dataset([record, record], tokenizer, n_prompt + 1)
    assert stats == {"kept": 2, "truncated": 2, "dropped": 0} and examples == [cut, cut]
    with pytest.warns(UserWarning, match="0 responses truncated, 1 examples dropped"):
        examples, stats = encode_dataset([record], tokenizer, n_prompt)
    assert stats == {"kept": 0, "truncated": 0, "dropped": 1} and examples == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, stats = encode_dataset(RECORDS, tokenizer, 512)
    assert stats == {"kept": 3, "truncated": 0, "dropped": 0}


def test_padding_masks_and_labels(tokenizer):
    examples = [encode_for_training(r, tokenizer, 512) for r in RECORDS]
    batch = DataCollatorForInstructions(tokenizer, pad_to_multiple_of=8)(examples)
    width = batch["input_ids"].shape[1]
    assert width % 8 == 0 and width >= max(len(e["input_ids"]) for e in examples)
    for row, ex in enumerate(examples):
        n = len(ex["input_ids"])
        assert batch["input_ids"][row, :n].tolist() == ex["input_ids"]
        assert batch["labels"][row, :n].tolist() == ex["labels"]
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (width - n)
        assert (batch["labels"][row, n:] == IGNORE_INDEX).all()
        assert (batch["input_ids"][row, n:] == tokenizer.pad_token_id).all()


def test_length_grouping_is_a_deterministic_permutation_with_less_padding():
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(5, 200, (512,), generator=g).tolist()
    batches = length_grouped_batches(lengths, 8, torch.Generator().manual_seed(1))
    assert sorted(i for b in batches for i in b) == list(range(512))
    assert batches == length_grouped_batches(lengths, 8, torch.Generator().manual_seed(1))
    order = torch.randperm(512, generator=torch.Generator().manual_seed(1)).tolist()
    random_batches = [order[i:i + 8] for i in range(0, 512, 8)]
    padded = lambda bs: sum(len(b) * max(lengths[i] for i in b) for b in bs)  # noqa: E731
    assert padded(batches) < 0.7 * padded(random_batches)


def _random_examples(n, vocab, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        length = int(torch.randint(6, 20, (1,), generator=g))
        prompt = int(torch.randint(2, length - 2, (1,), generator=g))
        ids = torch.randint(3, vocab, (length,), generator=g).tolist()
        out.append({"input_ids": ids, "labels": [IGNORE_INDEX] * prompt + ids[prompt:]})
    return out


def test_pack_examples_respects_the_row_length():
    examples = _random_examples(20, 50)
    rows = pack_examples(examples, 40)
    assert [e for row in rows for e in row] == examples
    assert all(sum(len(e["input_ids"]) for e in row) <= 40 for row in rows)
    with pytest.raises(ValueError, match="packing length"):
        pack_examples(examples, 10)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_packed_rows_give_the_same_loss_and_logits_as_padded_rows(arch):
    torch.manual_seed(0)
    if arch == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=64, n_embd=32, n_layer=2, n_head=2,
                                           bos_token_id=0, eos_token_id=0))
    else:
        model = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64,
                                             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                             max_position_embeddings=64))
    model.eval()
    examples = _random_examples(9, 50)
    padded = DataCollatorForInstructions(pad_token_id=0)(examples)
    packed = DataCollatorForInstructions(pad_token_id=0, packing=True, max_length=48)(examples)
    assert packed["input_ids"].shape[0] < len(examples) and "attention_mask" not in packed
    assert (packed["labels"] != IGNORE_INDEX).sum() == sum((padded["labels"][:, 1:] != IGNORE_INDEX).sum(1))
    with torch.no_grad():
        logits_pad = model(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"]).logits
        logits_pack = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"],
                            use_cache=False).logits  # with a cache, transformers ignores packing
    torch.testing.assert_close(masked_loss_sum(logits_pack, packed["labels"]),
                               masked_loss_sum(logits_pad, padded["labels"]), rtol=1e-5, atol=1e-4)
    # token by token: the second example of the first packed row sees only itself
    first, second = examples[0], examples[1]
    start, n = len(first["input_ids"]), len(second["input_ids"])
    torch.testing.assert_close(logits_pack[0, start:start + n], logits_pad[1, :n], rtol=1e-4, atol=1e-4)


def test_collator_errors_are_clear():
    with pytest.raises(ValueError, match="pad"):
        DataCollatorForInstructions()
    with pytest.raises(ValueError, match="max_length"):
        DataCollatorForInstructions(pad_token_id=0, packing=True)
    with pytest.raises(ValueError, match="empty"):
        DataCollatorForInstructions(pad_token_id=0)([])
