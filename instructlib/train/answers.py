"""Greedy answers of a (fine-tuned) model to records: what exact match is computed on."""
from __future__ import annotations

from typing import Sequence

import torch

from ..data.prompts import render_for_inference
from .loop import is_transformers_model


@torch.no_grad()
def generate_answers(model, tokenizer, records: Sequence, template: str = "alpaca", max_new_tokens: int = 24,
                     batch_size: int = 32, stop_at_newline: bool = True) -> list[str]:
    """Greedy continuation of each record's prompt, cut at the end-of-text token (and the first newline).

    Prompts are left-padded in batches; works for TinyGPT (``generate(..., temperature=0)``) and
    transformers models (``generate(do_sample=False)``).
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    answers: list[str] = []
    try:
        for i in range(0, len(records), batch_size):
            prompts = [render_for_inference(r, template, tokenizer) for r in records[i:i + batch_size]]
            enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            kwargs = dict(attention_mask=enc["attention_mask"], max_new_tokens=max_new_tokens,
                          eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
            if is_transformers_model(model):
                out = model.generate(enc["input_ids"], do_sample=False, **kwargs)
            else:
                out = model.generate(enc["input_ids"], temperature=0.0, **kwargs)
            for row in out[:, enc["input_ids"].shape[1]:].tolist():
                if tokenizer.eos_token_id in row:
                    row = row[:row.index(tokenizer.eos_token_id)]
                text = tokenizer.decode(row, skip_special_tokens=True)
                answers.append(text.split("\n")[0] if stop_at_newline else text)
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return answers
