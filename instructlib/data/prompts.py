"""Chapter 04: prompt formats — render a record as text for training (prompt and response apart) or inference.

* ``"alpaca"``: the Stanford Alpaca template, with or without the input block.
* ``"chat"``: the model's own chat template through ``tokenizer.apply_chat_template``.

Few-shot prompts (``few_shot_prompt``) and constrained-choice scoring (``score_choices``: compare
the log-likelihood of each allowed answer) serve the zero/few-shot experiments of chapter 04.

``render_for_training`` returns ``(prompt, response)`` with ``prompt + response`` the full training
text *without* the end-of-sequence token: chapter 05 appends ``eos`` as a token id (a string such
as "</s>" may not tokenize to it) and masks the prompt's labels with -100.
"""
from __future__ import annotations

from typing import Optional, Sequence

from .formats import to_messages
from .records import Record

ALPACA_PREAMBLE = "Below is an instruction that describes a task. " \
                  "Write a response that appropriately completes the request."
ALPACA_PREAMBLE_INPUT = "Below is an instruction that describes a task, paired with an input that " \
                        "provides further context. Write a response that appropriately completes the request."
ALPACA_PROMPT = ALPACA_PREAMBLE + "\n\n### Instruction:\n{instruction}\n\n### Response:\n"
ALPACA_PROMPT_INPUT = ALPACA_PREAMBLE_INPUT + "\n\n### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
TEMPLATES = ("alpaca", "chat")


def alpaca_prompt(record: Record) -> str:
    """The Alpaca prompt, ending with "### Response:" and a newline (the input block only if non-empty)."""
    if record.input:
        return ALPACA_PROMPT_INPUT.format(instruction=record.instruction, input=record.input)
    return ALPACA_PROMPT.format(instruction=record.instruction)


def _chat_text(messages: list[dict], tokenizer, generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def chat_prompt(record: Record, tokenizer) -> str:
    """The chat-template text up to and including the assistant header."""
    if tokenizer is None or getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("template='chat' needs a tokenizer with a chat template")
    return _chat_text(to_messages(record, with_response=False), tokenizer, True)


def render_for_training(record: Record, template: str = "alpaca", tokenizer=None) -> tuple[str, str]:
    """(prompt, response): the prompt to mask and the response to learn, without the eos token."""
    if template == "alpaca":
        return alpaca_prompt(record), record.output
    if template != "chat":
        raise ValueError(f"unknown template {template!r}; choose one of {TEMPLATES}")
    prompt = chat_prompt(record, tokenizer)
    full = _chat_text(to_messages(record), tokenizer, False)
    if not full.startswith(prompt):
        raise ValueError("this chat template does not render the conversation as prompt + reply; "
                         "it cannot be split for prompt masking")
    response = full[len(prompt):]
    eos = tokenizer.eos_token or ""
    end = response.rfind(eos) if eos else -1
    if end >= 0 and not response[end + len(eos):].strip():  # drop the end-of-turn token and what follows
        response = response[:end]
    return prompt, response


def render_for_inference(record: Record, template: str = "alpaca", tokenizer=None) -> str:
    """The prompt a model continues at inference time (equal to the training prompt part)."""
    if template == "alpaca":
        return alpaca_prompt(record)
    if template != "chat":
        raise ValueError(f"unknown template {template!r}; choose one of {TEMPLATES}")
    return chat_prompt(record, tokenizer)


def few_shot_messages(demos: Sequence[Record], query: Record) -> list[dict]:
    """A multi-turn chat: one user/assistant exchange per demonstration, then the query's user turn."""
    messages = [m for d in demos for m in to_messages(d)]
    return messages + to_messages(query, with_response=False)


def few_shot_prompt(demos: Sequence[Record], query: Record, template: str = "alpaca", tokenizer=None) -> str:
    """A k-shot prompt: the demonstrations answered, then the query (k = 0 is the zero-shot prompt)."""
    if template == "chat":
        if tokenizer is None or getattr(tokenizer, "chat_template", None) is None:
            raise ValueError("template='chat' needs a tokenizer with a chat template")
        return _chat_text(few_shot_messages(demos, query), tokenizer, True)
    shots = "".join("".join(render_for_training(d, template)) + "\n\n" for d in demos)
    return shots + render_for_inference(query, template)


def cache_keyword(model) -> str:
    """The forward argument that takes a KV cache: ``cache`` (transformers >= 5.24), else ``past_key_values``.

    transformers 5.24 renamed ``past_key_values`` to ``cache`` and removes the old name in 5.40; the
    model's own ``forward`` signature says which one this installation understands.
    """
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # a peft wrapper
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def score_choices(model, tokenizer, prompts: Sequence[str], choices: Sequence[Sequence[str]], *,
                  suffix: Optional[str] = None, progress: bool = True) -> list[list[float]]:
    """log P(choice + suffix | prompt), summed over tokens, for every choice of every prompt.

    ``suffix`` defaults to the eos token (SmolLM2's end of turn): scoring "spam<|im_end|>" rather than
    "spam" stops a label that is a prefix of another ("spam" / "not spam", "no" / "no idea") from
    winning for free. Prompt and choice are tokenized separately and concatenated, so a choice has the
    same tokens after every prompt. Each prompt runs through the model once into a ``DynamicCache``
    that we own; the cache is then repeated for the batch of its choices, which costs a few tokens
    each instead of a whole prompt. Works with any transformers 5.x (see :func:`cache_keyword`).
    """
    import torch
    from tqdm.auto import tqdm
    from transformers import DynamicCache

    suffix = tokenizer.eos_token if suffix is None else suffix
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    keyword = cache_keyword(model)
    out: list[list[float]] = []
    for prompt, cs in tqdm(list(zip(prompts, choices)), desc="scoring", disable=not progress or len(prompts) < 2):
        p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        c_ids = [tokenizer(c + suffix, add_special_tokens=False)["input_ids"] for c in cs]
        width = max(len(c) for c in c_ids)
        cache = DynamicCache(config=model.config)
        with torch.no_grad():
            first = model(input_ids=torch.tensor([p_ids], device=device), use_cache=True, logits_to_keep=1,
                          **{keyword: cache})
            cache.batch_repeat_interleave(len(cs))
            ids = torch.tensor([c + [pad] * (width - len(c)) for c in c_ids], device=device)
            mask = torch.tensor([[1] * (len(p_ids) + len(c)) + [0] * (width - len(c)) for c in c_ids], device=device)
            rest = model(input_ids=ids, attention_mask=mask, use_cache=True, **{keyword: cache})
        # token k of a choice is predicted by the prompt's last position (k = 0) or by choice position k - 1
        logits = torch.cat([first.logits[:, -1:].expand(len(cs), 1, -1), rest.logits[:, :-1]], dim=1)
        logprobs = logits.float().log_softmax(-1).gather(-1, ids[..., None])[..., 0]
        out.append([logprobs[k, :len(c)].sum().item() for k, c in enumerate(c_ids)])
    return out
