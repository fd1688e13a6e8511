"""Chapter 05: greedy answers of a (fine-tuned) model to records — what exact match is computed on."""
from __future__ import annotations

from typing import Sequence

from ..data.prompts import render_for_inference
from ..models.llm import LLM


def generate_answers(model, tokenizer, records: Sequence, template: str = "alpaca", max_new_tokens: int = 24,
                     batch_size: int = 32, stop_at_newline: bool = True) -> list[str]:
    """Greedy continuation of each record's prompt, cut at the end-of-text token (and the first newline).

    A thin use of the LLM interface (left-padded batches); works for TinyGPT and transformers models.
    """
    prompts = [render_for_inference(r, template, tokenizer) for r in records]
    return LLM.wrap(model, tokenizer).complete(prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                                               stop=("\n",) if stop_at_newline else (), progress=False)
