"""Chapter 05: from records to training batches — the label mask, padding, length grouping and packing.

Supervised fine-tuning learns only the response. A record becomes ``prompt ids + response ids +
[eos]``; labels copy the ids on the response and the end-of-text token and are ``-100`` (ignored by
the loss) on every prompt token and on padding. Labels are aligned with ``input_ids`` (the
transformers convention): the loss compares the logits at position ``t`` with ``labels[t + 1]``.
"""
from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import torch

from ..lm.metrics import IGNORE_INDEX


def _ids(tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` without special tokens added by the tokenizer (BOS and the like)."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def encode_for_training(record, tokenizer, max_length: int, template: str = "alpaca",
                        min_response_tokens: int = 1) -> Optional[dict]:
    """``{"input_ids", "labels"}`` for one record; None (with a warning) if the response cannot fit.

    The prompt and the response are tokenized separately, so the prompt ids are exactly the ids the
    model will see at inference. Too long examples lose the end of their response (the prompt is
    never cut: a model cannot answer an instruction it did not see); an example left with fewer than
    ``min_response_tokens`` learned tokens is dropped, never kept with an empty target.
    """
    from .prompts import render_for_training

    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no eos_token_id: the model could never learn to stop")
    prompt, response = render_for_training(record, template=template, tokenizer=tokenizer)
    prompt_ids = _ids(tokenizer, prompt)
    target = _ids(tokenizer, response) + [tokenizer.eos_token_id]
    room = max_length - len(prompt_ids)
    if room < min(min_response_tokens, len(target)):
        warnings.warn(f"dropped an example: its prompt has {len(prompt_ids)} tokens, "
                      f"max_length={max_length} leaves no room for the response", stacklevel=2)
        return None
    target = target[:room]
    return {"input_ids": prompt_ids + target, "labels": [IGNORE_INDEX] * len(prompt_ids) + target}


def encode_dataset(records: Iterable, tokenizer, max_length: int, template: str = "alpaca"
                   ) -> tuple[list[dict], Counter]:
    """Encode many records; return the examples and counts of ``kept``, ``truncated``, ``dropped``."""
    examples, stats = [], Counter(kept=0, truncated=0, dropped=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one summary warning below instead of one per example
        for record in records:
            example = encode_for_training(record, tokenizer, max_length, template)
            if example is None:
                stats["dropped"] += 1
                continue
            stats["kept"] += 1
            stats["truncated"] += example["labels"][-1] != tokenizer.eos_token_id
            examples.append(example)
    if stats["dropped"] or stats["truncated"]:
        warnings.warn(f"max_length={max_length}: {stats['truncated']} responses truncated, "
                      f"{stats['dropped']} examples dropped (of {stats['kept'] + stats['dropped']})")
    return examples, stats


def length_grouped_batches(lengths: Sequence[int], batch_size: int, generator: torch.Generator,
                           mega_batch: int = 16) -> list[list[int]]:
    """Shuffled batches of indices whose examples have similar lengths (less padding).

    Shuffle, cut into mega-batches of ``mega_batch * batch_size``, sort each by length, cut into
    batches, then shuffle the batch order so training does not see lengths in a pattern.
    """
    order = torch.randperm(len(lengths), generator=generator).tolist()
    size = mega_batch * batch_size
    batches = []
    for start in range(0, len(order), size):
        chunk = sorted(order[start:start + size], key=lambda i: -lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def pack_examples(examples: Sequence[dict], max_length: int) -> list[list[dict]]:
    """Greedily group examples (in order) into rows of at most ``max_length`` tokens."""
    rows, row, used = [], [], 0
    for ex in examples:
        n = len(ex["input_ids"])
        if n > max_length:
            raise ValueError(f"an example has {n} tokens, more than the packing length {max_length}")
        if row and used + n > max_length:
            rows.append(row)
            row, used = [], 0
        row.append(ex)
        used += n
    return rows + ([row] if row else [])


@dataclass
class DataCollatorForInstructions:
    """Pad examples into tensors ``input_ids``, ``attention_mask``, ``labels`` (padding → -100).

    With ``packing=True`` several examples share a row of ``max_length`` tokens. Then there is no
    ``attention_mask``; ``position_ids`` restart at 0 for every example, and transformers models
    (v5) read that as "packed sequences" and use a block-diagonal causal mask, so examples never
    attend to each other. Only models that understand ``position_ids`` this way may be fed packed rows.
    """

    tokenizer: object = None
    pad_token_id: Optional[int] = None
    pad_to_multiple_of: Optional[int] = None
    packing: bool = False
    max_length: Optional[int] = None

    def __post_init__(self) -> None:
        if self.pad_token_id is None:
            pad = getattr(self.tokenizer, "pad_token_id", None)
            self.pad_token_id = pad if pad is not None else getattr(self.tokenizer, "eos_token_id", None)
        if self.pad_token_id is None:
            raise ValueError("give a tokenizer with a pad or eos token, or pad_token_id")
        if self.packing and not self.max_length:
            raise ValueError("packing=True needs max_length (the length of a packed row)")

    def _width(self, longest: int) -> int:
        m = self.pad_to_multiple_of
        return -(-longest // m) * m if m else longest

    def __call__(self, features: Sequence[dict]) -> dict[str, torch.Tensor]:
        """Collate a list of ``encode_for_training`` outputs into a batch of tensors."""
        if not features:
            raise ValueError("cannot collate an empty list of examples")
        if self.packing:
            return self._packed(features)
        width = self._width(max(len(f["input_ids"]) for f in features))
        ids = torch.full((len(features), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(features), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        for row, f in enumerate(features):
            n = len(f["input_ids"])
            ids[row, :n] = torch.tensor(f["input_ids"])
            labels[row, :n] = torch.tensor(f["labels"])
            mask[row, :n] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    def _packed(self, features: Sequence[dict]) -> dict[str, torch.Tensor]:
        rows = pack_examples(features, self.max_length)
        width = self._width(max(sum(len(f["input_ids"]) for f in row) for row in rows))
        ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        positions = torch.zeros((len(rows), width), dtype=torch.long)
        for r, row in enumerate(rows):
            start = 0
            for f in row:
                n = len(f["input_ids"])
                ids[r, start:start + n] = torch.tensor(f["input_ids"])
                labels[r, start:start + n] = torch.tensor(f["labels"])
                labels[r, start] = IGNORE_INDEX  # never learn an example's first token from the previous one
                positions[r, start:start + n] = torch.arange(n)
                start += n
            positions[r, start:] = torch.arange(width - start)  # the padding tail is its own segment
        return {"input_ids": ids, "labels": labels, "position_ids": positions}
