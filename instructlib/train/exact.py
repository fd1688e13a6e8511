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

from ..data.collate import IGNORE_INDEX, DataCollatorForInstructions, encode_for_training
from .loop import forward_logits


@lru_cache(maxsize=8)
def _newline_ids(tokenizer) -> frozenset[int]:
    """Token ids whose text starts with a newline: greedy answers are cut there, like at end-of-text."""
    return frozenset(i for i in range(len(tokenizer)) if tokenizer.decode([i]).lstrip(" \t").startswith("\n"))


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
    eos = tokenizer.eos_token_id
    end_ids = torch.tensor(sorted({eos} | (_newline_ids(tokenizer) if stop_at_newline else set())), device=device)
    encoded = [encode_for_training(r, tokenizer, max_length, template) for r in records]
    collate = DataCollatorForInstructions(tokenizer)  # right padding: positions are those of an unpadded sequence
    result = [False] * len(records)
    order = sorted((i for i, e in enumerate(encoded) if e is not None and e["labels"][-1] == eos),
                   key=lambda i: len(encoded[i]["input_ids"]))
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        batch = {k: v.to(device) for k, v in collate([encoded[i] for i in chunk]).items()}
        guess = forward_logits(model, batch)[:, :-1].argmax(-1)  # position t predicts token t + 1
        target = batch["labels"][:, 1:]
        right = torch.where(target == eos, torch.isin(guess, end_ids), guess == target)
        ok = (right | (target == IGNORE_INDEX)).all(dim=1)
        for row, i in enumerate(chunk):
            result[i] = bool(ok[row])
    model.train(was_training)
    return result
