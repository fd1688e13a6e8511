"""Chapter 05: greedy exact match without generating — one teacher-forced forward pass per batch.

Greedy decoding reproduces the reference answer exactly when, fed the prompt and the reference,
the model's most likely next token is the reference token at *every* answer position and, after
the last one, the end of the answer (the end-of-text token, or a newline where answers are cut at
the first newline). So exact match needs no decoding loop: encode prompt + answer + end-of-text as
for training (``data.collate.encode_for_training``), run the batch once, compare the argmax with the
labels. ``max_new_tokens`` decoding steps become one pass; on a 2-core CPU that is the difference
between minutes and seconds for a 2,000-item test set.

The equivalence assumes the model writes the answer with the tokenizer's own encoding of it (the
encoding it was trained on); ``tests/test_exact.py`` checks it against generation on 500+ items for
two models. Use it wherever the reference answer is known; generate where it is not.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Optional, Sequence

import torch

from ..data.collate import IGNORE_INDEX, encode_for_training


@lru_cache(maxsize=8)
def _newline_ids(tokenizer) -> frozenset[int]:
    """Token ids whose text starts with a newline: greedy answers are cut there, like at end-of-text."""
    ids = set()
    for i in range(len(tokenizer)):
        if tokenizer.decode([i]).lstrip(" \t").startswith("\n"):
            ids.add(i)
    return frozenset(ids)


def _logits(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    out = model(input_ids=input_ids, attention_mask=attention_mask)
    return out.logits if hasattr(out, "logits") else out


@torch.no_grad()
def greedy_exact(model, tokenizer, records: Sequence, template: str = "chat", *, max_length: Optional[int] = None,
                 batch_size: int = 64, stop_at_newline: bool = True) -> list[bool]:
    """For each record: would greedy decoding write exactly ``record.output`` and stop? One pass per batch.

    An example whose prompt leaves no room for its answer (``max_length``, default the model's
    context) counts as wrong, as generation could not complete it either.
    """
    if max_length is None:
        config = getattr(model, "config", None)
        max_length = getattr(config, "block_size", None) or getattr(config, "n_positions", None) \
            or getattr(config, "max_position_embeddings", None) or 512
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    ends = {tokenizer.eos_token_id} | (_newline_ids(tokenizer) if stop_at_newline else set())
    end_ids = torch.tensor(sorted(ends), device=device)
    encoded = [encode_for_training(r, tokenizer, max_length, template) for r in records]
    result = [False] * len(records)
    order = sorted((i for i, e in enumerate(encoded) if e is not None and e["labels"][-1] == tokenizer.eos_token_id),
                   key=lambda i: len(encoded[i]["input_ids"]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        width = max(len(encoded[i]["input_ids"]) for i in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        labels = torch.full((len(chunk), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, i in enumerate(chunk):  # right padding: positions are those of an unpadded sequence
            n = len(encoded[i]["input_ids"])
            ids[row, :n] = torch.tensor(encoded[i]["input_ids"])
            labels[row, :n] = torch.tensor(encoded[i]["labels"])
            mask[row, :n] = 1
        ids, labels, mask = ids.to(device), labels.to(device), mask.to(device)
        guess = _logits(model, ids, mask)[:, :-1].argmax(-1)  # position t predicts token t + 1
        target = labels[:, 1:]
        learned = target != IGNORE_INDEX
        is_end = target == tokenizer.eos_token_id
        right = torch.where(is_end, torch.isin(guess, end_ids), guess == target)
        ok = (right | ~learned).all(dim=1)
        for row, i in enumerate(chunk):
            result[i] = bool(ok[row])
    model.train(was_training)
    return result
