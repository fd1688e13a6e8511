"""Chapter 05: the one interface every later chapter generates text through (chapter 05 first, to
evaluate fine-tuned models).

``llm.complete(prompts, ...)`` continues raw prompts, ``llm.chat(conversations, ...)`` applies the
model's chat template first; both run in left-padded batches (a tqdm bar over batches), stop at the
end-of-text token and cut at the first ``stop`` string. ``llm.nll(texts)`` scores text (perplexity).

* ``CausalLM``: the course TinyGPT and any transformers causal LM (SmolLM2, Qwen, ...): one call path,
  because ``TinyGPT.generate`` takes the same arguments as ``transformers``' ``generate``.
* ``Seq2SeqLM``: encoder-decoder models (Marian opus-mt translators); ``prefix`` is prepended to every
  source (opus-mt-en-zh needs the target-language token ``>>cmn_Hans<<``).
* ``ScriptedLLM``: deterministic answers from a function, a dict or a list — for tests only.

Sampling with ``seed`` seeds torch before each batch (batch ``b`` uses ``seed + b``): the same call
gives the same text; a different ``batch_size`` gives different (equally valid) samples.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F

Conversation = Sequence[Mapping[str, str]]

# target-language tokens that multilingual-target Marian models need at the start of the source
TARGET_LANGUAGE_PREFIX = {"opus-mt-en-zh": ">>cmn_Hans<< "}


def is_transformers_model(model: torch.nn.Module) -> bool:
    """True for a transformers PreTrainedModel, also inside DDP or a peft wrapper."""
    from transformers import PreTrainedModel

    from torch.nn.parallel import DistributedDataParallel

    model = model.module if isinstance(model, DistributedDataParallel) else model
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return isinstance(base, PreTrainedModel)


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to (not including) the earliest occurrence of any stop string."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=len(text))
    return text[:cut]


class LLM:
    """Batched text generation behind one interface; subclasses implement ``_generate``."""

    name: str = "llm"
    groups_by_length: bool = True  # greedy batches: similar lengths together (ScriptedLLM: no)

    def complete(self, prompts: Sequence[str], *, max_new_tokens: int = 64, temperature: float = 0.0,
                 top_p: float = 1.0, stop: Sequence[str] = (), seed: Optional[int] = None,
                 batch_size: int = 16, num_beams: int = 1, progress: bool = True) -> list[str]:
        """Continue each prompt (greedy at ``temperature=0``); one string per prompt, stop strings cut."""
        if isinstance(prompts, str):
            raise TypeError("complete() takes a list of prompts; wrap a single prompt in a list")
        if max_new_tokens < 0 or temperature < 0 or not 0 < top_p <= 1 or batch_size < 1 or num_beams < 1:
            raise ValueError(f"bad generation settings: max_new_tokens={max_new_tokens}, temperature={temperature}, "
                             f"top_p={top_p}, batch_size={batch_size}, num_beams={num_beams}")
        from tqdm.auto import tqdm

        prompts, stop = list(prompts), tuple(stop)
        # Greedy text does not depend on the batch a prompt shares, so batch prompts of similar
        # length together (less padding); sampled text keeps the caller's order, so seeds mean the same.
        order = list(range(len(prompts)))
        if temperature == 0 and self.groups_by_length:
            order.sort(key=lambda k: len(prompts[k]))
        starts = range(0, len(prompts), batch_size)
        bar = tqdm(starts, desc=f"{self.name}: generating", unit="batch",
                   disable=not progress or len(starts) < 2)
        out: list[str] = [""] * len(prompts)
        for b, i in enumerate(bar):
            batch_seed = None if seed is None else seed + b
            chunk = order[i:i + batch_size]
            texts = self._generate([prompts[k] for k in chunk], max_new_tokens=max_new_tokens,
                                   temperature=temperature, top_p=top_p, stop=stop, seed=batch_seed,
                                   num_beams=num_beams)
            for k, text in zip(chunk, texts):
                out[k] = cut_at_stop(text, stop)
        return out

    def chat(self, conversations: Sequence[Conversation], **kwargs) -> list[str]:
        """The assistant's reply to each conversation (chat template applied); same options as ``complete``."""
        return self.complete([self.chat_prompt(c) for c in conversations], **kwargs)

    def chat_prompt(self, conversation: Conversation) -> str:
        """The prompt text of a conversation, ending where the assistant's reply begins."""
        raise NotImplementedError(f"{type(self).__name__} has no chat template")

    def nll(self, texts: Sequence[str], *, batch_size: int = 16) -> list[tuple[float, int]]:
        """(summed negative log-likelihood in nats, number of scored tokens) of each text."""
        raise NotImplementedError(f"{type(self).__name__} cannot score text")

    def _generate(self, prompts: list[str], *, max_new_tokens: int, temperature: float, top_p: float,
                  stop: tuple[str, ...], seed: Optional[int], num_beams: int) -> list[str]:
        raise NotImplementedError

    @staticmethod
    def wrap(model: torch.nn.Module, tokenizer, name: Optional[str] = None, prefix: str = "") -> "LLM":
        """The right ``LLM`` for an in-memory model: ``Seq2SeqLM`` for encoder-decoders, else ``CausalLM``."""
        config = getattr(model, "config", None)
        if getattr(config, "is_encoder_decoder", False):
            return Seq2SeqLM(model, tokenizer, name=name, prefix=prefix)
        if prefix:
            raise ValueError("prefix is for encoder-decoder (translation) models")
        return CausalLM(model, tokenizer, name=name)


class _HFBacked(LLM):
    """Shared plumbing of models that come with a tokenizer: device, eval mode, padding side, seeding."""

    def __init__(self, model: torch.nn.Module, tokenizer, name: Optional[str] = None):
        self.model, self.tokenizer = model, tokenizer
        self.name = name or getattr(getattr(model, "config", None), "_name_or_path", None) or type(model).__name__
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token

    @property
    def device(self) -> torch.device:
        """Where the model's weights are."""
        return next(self.model.parameters()).device

    @contextmanager
    def _inference(self, padding_side: str) -> Iterator[None]:
        was_training, side = self.model.training, self.tokenizer.padding_side
        self.model.eval()
        self.tokenizer.padding_side = padding_side
        try:
            with torch.no_grad():
                yield
        finally:
            self.tokenizer.padding_side = side
            self.model.train(was_training)

    def _eos_ids(self) -> list[int]:
        ids = {self.tokenizer.eos_token_id}
        generation_config = getattr(self.model, "generation_config", None)
        extra = getattr(generation_config, "eos_token_id", None)
        ids.update(extra if isinstance(extra, (list, tuple)) else [extra])
        return sorted(i for i in ids if i is not None)

    def _sampling(self, temperature: float, top_p: float, seed: Optional[int]) -> dict:
        if temperature == 0:
            return {"do_sample": False}
        if seed is not None:
            torch.manual_seed(seed)
        return {"do_sample": True, "temperature": temperature, "top_p": top_p}

    def _decode(self, rows: list[list[int]]) -> list[str]:
        eos, texts = set(self._eos_ids()), []
        for row in rows:
            cut = next((k for k, t in enumerate(row) if t in eos), len(row))
            texts.append(self.tokenizer.decode(row[:cut], skip_special_tokens=True))
        return texts


class CausalLM(_HFBacked):
    """A decoder-only model (TinyGPT or transformers) behind the ``LLM`` interface."""

    def chat_prompt(self, conversation: Conversation) -> str:
        """The tokenizer's chat template with the assistant turn opened."""
        return self.tokenizer.apply_chat_template(list(conversation), tokenize=False, add_generation_prompt=True)

    def _generate(self, prompts, *, max_new_tokens, temperature, top_p, stop, seed, num_beams):
        hf = is_transformers_model(self.model)
        if num_beams > 1 and not hf:
            raise ValueError("beam search needs a transformers model; TinyGPT decodes greedily or by sampling")
        with self._inference("left"):
            enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
            kwargs = dict(attention_mask=enc["attention_mask"], max_new_tokens=max_new_tokens,
                          eos_token_id=self._eos_ids(), pad_token_id=self.tokenizer.pad_token_id,
                          **self._sampling(temperature, top_p, seed))
            if hf:
                kwargs["num_beams"] = num_beams
                if stop:  # stop early instead of generating max_new_tokens and cutting afterwards
                    kwargs.update(stop_strings=list(stop), tokenizer=self.tokenizer)
            out = self.model.generate(enc["input_ids"], **kwargs)
        return self._decode(out[:, enc["input_ids"].shape[1]:].tolist())

    def _max_length(self) -> int:
        config = self.model.config
        for attr in ("block_size", "max_position_embeddings", "n_positions"):
            value = getattr(config, attr, None) if not isinstance(config, dict) else config.get(attr)
            if value:
                return int(value)
        return 2048

    def nll(self, texts: Sequence[str], *, batch_size: int = 16) -> list[tuple[float, int]]:
        """Summed next-token NLL of each text after a start token (BOS, else EOS), truncated to the context."""
        start = self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self.tokenizer.eos_token_id
        limit, results = self._max_length(), []
        with self._inference("right"):
            for i in range(0, len(texts), batch_size):
                rows = [[start] + self.tokenizer(t, add_special_tokens=False)["input_ids"][:limit - 1]
                        for t in texts[i:i + batch_size]]
                width = max(len(r) for r in rows)
                ids = torch.tensor([r + [self.tokenizer.pad_token_id] * (width - len(r)) for r in rows])
                mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
                out = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device))
                logits = (out.logits if hasattr(out, "logits") else out).float()
                losses = F.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:].to(self.device), reduction="none")
                losses = (losses * mask[:, 1:].to(self.device)).sum(dim=1)
                results.extend((float(loss), len(r) - 1) for loss, r in zip(losses.tolist(), rows))
        return results


class Seq2SeqLM(_HFBacked):
    """An encoder-decoder model (Marian translation) behind the ``LLM`` interface: prompt = source text."""

    def __init__(self, model: torch.nn.Module, tokenizer, name: Optional[str] = None, prefix: str = ""):
        super().__init__(model, tokenizer, name)
        self.prefix = prefix

    def _generate(self, prompts, *, max_new_tokens, temperature, top_p, stop, seed, num_beams):
        with self._inference("right"):
            enc = self.tokenizer([self.prefix + p for p in prompts], return_tensors="pt", padding=True,
                                 truncation=True).to(self.device)
            out = self.model.generate(**enc, max_new_tokens=max_new_tokens, num_beams=num_beams,
                                      **self._sampling(temperature, top_p, seed))
        rows = out[:, 1:].tolist()  # drop the decoder start token
        return self._decode(rows)


class ScriptedLLM(LLM):
    """Deterministic fake model for tests: answers from a function, a prompt->answer dict, or a list in turn.

    Every prompt it was given is kept in ``calls`` (in the caller's order); ``chat_prompt`` renders
    ``<|role|>content`` lines.
    """

    groups_by_length = False  # a list script answers in turn: keep the caller's order

    def __init__(self, script: Union[Callable[[str], str], Mapping[str, str], Sequence[str]], name: str = "scripted"):
        self.script, self.name, self.calls, self._turn = script, name, [], 0

    def chat_prompt(self, conversation: Conversation) -> str:
        """A plain, deterministic rendering of the conversation."""
        return "".join(f"<|{m['role']}|>{m['content']}\n" for m in conversation) + "<|assistant|>"

    def _answer(self, prompt: str) -> str:
        if callable(self.script):
            return self.script(prompt)
        if isinstance(self.script, Mapping):
            if prompt not in self.script:
                raise KeyError(f"ScriptedLLM has no answer for prompt {prompt[:80]!r}")
            return self.script[prompt]
        answer = self.script[self._turn % len(self.script)]
        self._turn += 1
        return answer

    def _generate(self, prompts, *, max_new_tokens, temperature, top_p, stop, seed, num_beams):
        self.calls.extend(prompts)
        return [self._answer(p) for p in prompts]


def load_llm(name: str, *, device: Optional[torch.device | str] = None, dtype: Optional[torch.dtype] = None) -> LLM:
    """A course model by name (``"tinygpt"``, ``"smollm2-135m-instruct"``, a hub alias or a directory) as an ``LLM``."""
    from .loader import load_model, load_tokenizer

    model = load_model(name, device=device, dtype=dtype)
    return LLM.wrap(model, load_tokenizer(name), name=name, prefix=TARGET_LANGUAGE_PREFIX.get(name, ""))
