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

``complete(..., return_finish=True)`` also says why each text ended: ``"stop"`` (end-of-text token or a
stop string) or ``"length"`` (``max_new_tokens`` reached) — OpenAI's ``finish_reason``.

``ContinuousBatcher`` (transformers causal LMs) decodes one token per step for a changing set of
sequences: new prompts join between steps, finished ones leave, and each step returns the new
text of every sequence — iteration-level batching, what an inference server needs (chapter 10).

Sampling with ``seed`` seeds torch before each batch (batch ``b`` uses ``seed + b``): the same call
gives the same text; a different ``batch_size`` gives different (equally valid) samples.
"""
from __future__ import annotations

import inspect
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
                 batch_size: int = 16, num_beams: int = 1, progress: bool = True,
                 return_finish: bool = False) -> Union[list[str], list[tuple[str, str]]]:
        """Continue each prompt (greedy at ``temperature=0``); one string per prompt, stop strings cut.

        With ``return_finish=True`` each item is ``(text, finish_reason)``: ``"stop"`` when the model
        ended the text (end-of-text token) or a stop string cut it, ``"length"`` when it ran out of
        ``max_new_tokens``.
        """
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
        out: list = [""] * len(prompts)
        for b, i in enumerate(bar):
            batch_seed = None if seed is None else seed + b
            chunk = order[i:i + batch_size]
            results = self._generate_finish([prompts[k] for k in chunk], max_new_tokens=max_new_tokens,
                                            temperature=temperature, top_p=top_p, stop=stop, seed=batch_seed,
                                            num_beams=num_beams)
            for k, (text, reason) in zip(chunk, results):
                cut = cut_at_stop(text, stop)
                out[k] = (cut, "stop" if cut != text else reason) if return_finish else cut
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

    def _generate_finish(self, prompts: list[str], **kwargs) -> list[tuple[str, str]]:
        """``_generate`` plus a finish reason per text (before stop strings are cut); default ``"stop"``."""
        return [(text, "stop") for text in self._generate(prompts, **kwargs)]

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

    def _decode(self, rows: list[list[int]], max_new_tokens: int) -> list[tuple[str, str]]:
        """(text up to the first end-of-text token, finish reason) of each row of generated ids."""
        eos, out = set(self._eos_ids()), []
        for row in rows:
            cut = next((k for k, t in enumerate(row) if t in eos), None)
            reason = "stop" if cut is not None or len(row) < max_new_tokens else "length"
            out.append((self.tokenizer.decode(row[:cut], skip_special_tokens=True), reason))
        return out

    def _generate(self, prompts, **kwargs):
        return [text for text, _ in self._generate_finish(prompts, **kwargs)]


class CausalLM(_HFBacked):
    """A decoder-only model (TinyGPT or transformers) behind the ``LLM`` interface."""

    def chat_prompt(self, conversation: Conversation) -> str:
        """The tokenizer's chat template with the assistant turn opened."""
        return self.tokenizer.apply_chat_template(list(conversation), tokenize=False, add_generation_prompt=True)

    def _generate_finish(self, prompts, *, max_new_tokens, temperature, top_p, stop, seed, num_beams):
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
        return self._decode(out[:, enc["input_ids"].shape[1]:].tolist(), max_new_tokens)

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

    def _generate_finish(self, prompts, *, max_new_tokens, temperature, top_p, stop, seed, num_beams):
        with self._inference("right"):
            enc = self.tokenizer([self.prefix + p for p in prompts], return_tensors="pt", padding=True,
                                 truncation=True).to(self.device)
            out = self.model.generate(**enc, max_new_tokens=max_new_tokens, num_beams=num_beams,
                                      **self._sampling(temperature, top_p, seed))
        rows = out[:, 1:].tolist()  # drop the decoder start token
        return self._decode(rows, max_new_tokens)


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


# --- iteration-level (continuous) batching ---------------------------------------------------------

class _Sequence:
    """One prompt being decoded by ``ContinuousBatcher``."""

    __slots__ = ("key", "ids", "max_new_tokens", "temperature", "top_p", "stop", "generator", "sent", "hold",
                 "ignore_eos", "slot", "cached", "last")

    def __init__(self, key, max_new_tokens, temperature, top_p, stop, seed, ignore_eos=False):
        self.key, self.ids, self.max_new_tokens, self.sent = key, [], max_new_tokens, ""
        self.ignore_eos = ignore_eos
        self.temperature, self.top_p, self.stop = temperature, top_p, tuple(s for s in stop if s)
        self.generator = None
        if temperature > 0:
            self.generator = torch.Generator().manual_seed(seed if seed is not None else torch.seed() % 2**63)
        # how much text to hold back while it could still grow into a stop string
        self.hold = max((len(s) for s in self.stop), default=1) - 1
        self.slot, self.cached, self.last = -1, 0, -1  # cache owner id, tokens in the cache, token to feed next


def _cache_tensors(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(keys, values) per layer of a transformers ``DynamicCache`` (5.x ``layers`` or 4.x lists) or a tuple cache."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    if hasattr(cache, "key_cache"):
        return list(zip(cache.key_cache, cache.value_cache))
    return [(k, v) for k, v in cache]


def supports_continuous_batching(llm) -> bool:
    """True when ``ContinuousBatcher`` can serve ``llm``: a transformers causal LM whose attention takes a
    custom 4-D mask (the ``sdpa`` and ``eager`` implementations; flash attention does not)."""
    if not isinstance(llm, CausalLM) or not is_transformers_model(llm.model):
        return False
    return getattr(llm.model.config, "_attn_implementation", None) in ("sdpa", "eager")


class ContinuousBatcher:
    """Iteration-level batching over a transformers causal LM: sequences join and leave between steps.

    ``add`` queues a prompt; every ``step`` runs **one** forward pass that decodes the next token of every
    running sequence *and* prefills every prompt added since the last step. The sequences are packed
    side by side into a single row ("ragged" batching, as vLLM does): the step's input is each running
    sequence's newest token followed by each new prompt's tokens; one key/value cache holds every
    sequence's past, and a 4-D attention mask lets each token see only its own sequence's earlier
    tokens, with position ids counted per sequence. So a newcomer costs no extra forward pass and no
    padding, a finished sequence leaves at once (its cache columns are dropped), and a long answer never
    holds a short one back. ``step`` returns, per sequence that produced text or finished,
    ``(key, new_text, finish_reason_or_None, n_generated_tokens)``.

    The price of one dense row: attention work grows with the *total* cached length of the batch
    (vLLM's paged-attention kernels avoid that); for the course's small batches it is negligible.

    Greedy text equals ``LLM.complete``'s up to floating-point ties (the benchmark counts identical
    answers); sampling draws from a generator per sequence, so a seeded answer does not depend on
    which other requests share its steps. Text is released only when it cannot turn into a stop
    string or an incomplete UTF-8 character; the pieces of a sequence join to its final text.
    """

    def __init__(self, llm: "CausalLM"):
        if not supports_continuous_batching(llm):
            raise TypeError("ContinuousBatcher needs a CausalLM over a transformers model with sdpa or eager "
                            "attention")
        self.llm, self.model, self.tokenizer = llm, llm.model, llm.tokenizer
        self.model.eval()
        self.eos = set(llm._eos_ids())
        self.limit = llm._max_length()
        self.bool_mask = self.model.config._attn_implementation == "sdpa"  # eager wants an additive float mask
        self.rows: list[_Sequence] = []   # running sequences, in the order of the step's input
        self.kv: list[tuple[torch.Tensor, torch.Tensor]] = []  # per layer: (1, heads, cached tokens, head dim)
        self.owner: Optional[torch.Tensor] = None  # (cached tokens,): the slot of the sequence each belongs to
        self.waiting: list[tuple[_Sequence, list[int]]] = []
        self.forward_sizes: list[int] = []  # sequences per forward pass (statistics)
        self._slots = 0
        from ..data.prompts import cache_keyword

        self.keyword = cache_keyword(self.model)  # "cache" from transformers 5.24, "past_key_values" before
        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model  # peft passes it on
        self.keep_logits = "logits_to_keep" in inspect.signature(base.forward).parameters

    def __len__(self) -> int:
        """Sequences running or waiting to join."""
        return len(self.rows) + len(self.waiting)

    def encode(self, prompt: str) -> list[int]:
        """Token ids of ``prompt`` as ``add`` would use them."""
        return self.tokenizer(prompt, add_special_tokens=False)["input_ids"]

    def add(self, key, prompt: Union[str, Sequence[int]], *, max_new_tokens: int = 64, temperature: float = 0.0,
            top_p: float = 1.0, stop: Sequence[str] = (), seed: Optional[int] = None,
            ignore_eos: bool = False) -> None:
        """Queue a prompt (text or token ids) to join at the next ``step``.

        ``ignore_eos`` decodes past the end-of-text token until ``max_new_tokens`` or a stop string
        (benchmarks use it for answers of a fixed length, as vLLM's does).
        """
        ids = self.encode(prompt) if isinstance(prompt, str) else list(prompt)
        if max_new_tokens < 1 or temperature < 0 or not 0 < top_p <= 1:
            raise ValueError(f"bad generation settings: max_new_tokens={max_new_tokens}, "
                             f"temperature={temperature}, top_p={top_p}")
        if not ids or len(ids) + max_new_tokens > self.limit:
            raise ValueError(f"prompt of {len(ids)} tokens + {max_new_tokens} new tokens does not fit the "
                             f"context of {self.limit}")
        self.waiting.append((_Sequence(key, max_new_tokens, temperature, top_p, stop, seed, ignore_eos), ids))

    def cancel(self, key) -> None:
        """Drop a sequence (its client went away)."""
        self.waiting = [(s, ids) for s, ids in self.waiting if s.key != key]
        self._drop([s for s in self.rows if s.key == key])

    # -- the step ---------------------------------------------------------------------------------

    def _mask(self, q_owner: torch.Tensor, q_pos: torch.Tensor) -> torch.Tensor:
        """(1, 1, new tokens, cached + new tokens): a token sees its own sequence's past and earlier new tokens."""
        past = self.owner if self.owner is not None else q_owner.new_empty(0)
        same_past = q_owner[:, None] == past[None, :]
        same_new = (q_owner[:, None] == q_owner[None, :]) & (q_pos[None, :] <= q_pos[:, None])
        allowed = torch.cat([same_past, same_new], dim=1)[None, None]
        if self.bool_mask:
            return allowed
        dtype = next(self.model.parameters()).dtype
        return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(
            ~allowed, torch.finfo(dtype).min)

    def _forward(self, input_ids, mask, positions, ends):
        from transformers import DynamicCache

        cache = DynamicCache(ddp_cache_data=self.kv) if self.kv else DynamicCache()
        extra = {"logits_to_keep": ends} if self.keep_logits else {}  # only each sequence's last position
        out = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True,
                         **{self.keyword: cache}, **extra)
        returned = cache if self.keyword == "cache" else (getattr(out, "past_key_values", None) or cache)
        logits = out.logits[0] if self.keep_logits else out.logits[0, ends]
        return logits.float(), _cache_tensors(returned)

    def _choose(self, logits: torch.Tensor, seqs: list[_Sequence]) -> list[int]:
        tokens = logits.argmax(dim=-1).tolist()
        for i, s in enumerate(seqs):
            if s.temperature > 0:
                probs = torch.softmax(logits[i] / s.temperature, dim=-1)
                if s.top_p < 1:
                    sorted_p, idx = probs.sort(descending=True)
                    drop = sorted_p.cumsum(0) - sorted_p > s.top_p
                    probs = probs.clone()
                    probs[idx[drop]] = 0
                tokens[i] = int(torch.multinomial(probs / probs.sum(), 1, generator=s.generator))
        return tokens

    def _drop(self, gone: list[_Sequence]) -> None:
        """Remove finished or cancelled sequences and their cache columns."""
        if not gone:
            return
        slots = {s.slot for s in gone}
        self.rows = [s for s in self.rows if s.slot not in slots]
        if not self.rows:
            self.kv, self.owner = [], None
            return
        keep = (~torch.isin(self.owner, torch.tensor(sorted(slots), device=self.owner.device))).nonzero().squeeze(1)
        self.owner = self.owner[keep]
        self.kv = [(k.index_select(2, keep), v.index_select(2, keep)) for k, v in self.kv]

    def step(self) -> list[tuple]:
        """One forward pass: the next token of every running sequence and the prefill of the waiting ones."""
        joining, self.waiting = self.waiting, []
        for s, ids in joining:
            s.slot, self._slots = self._slots, self._slots + 1
        seqs = self.rows + [s for s, _ in joining]
        if not seqs:
            return []
        tokens, owner, positions, ends = [], [], [], []
        for s in self.rows:  # one token each: the newest, not yet in the cache
            tokens.append(s.last)
            owner.append(s.slot)
            positions.append(s.cached)
            ends.append(len(tokens) - 1)
        for s, ids in joining:  # the whole prompt
            tokens += ids
            owner += [s.slot] * len(ids)
            positions += range(len(ids))
            ends.append(len(tokens) - 1)
        device = self.llm.device
        owner_t, pos_t = torch.tensor(owner, device=device), torch.tensor(positions, device=device)
        with torch.no_grad():
            logits, self.kv = self._forward(torch.tensor([tokens], device=device), self._mask(owner_t, pos_t),
                                            pos_t[None], torch.tensor(ends, device=device))
        self.owner = owner_t if self.owner is None else torch.cat([self.owner, owner_t])
        self.forward_sizes.append(len(seqs))
        for s in self.rows:
            s.cached += 1
        for s, ids in joining:
            s.cached = len(ids)
        self.rows = seqs
        news, gone = [], []
        for s, t in zip(seqs, self._choose(logits, seqs)):
            s.last = t
            item = self._advance(s, t)
            if item is not None:
                news.append(item)
                if item[2] is not None:
                    gone.append(s)
        self._drop(gone)
        return news

    def _advance(self, s: _Sequence, token: int):
        """Record ``token`` for ``s``; return (key, new text, finish reason or None, n tokens) or None."""
        if token in self.eos and not s.ignore_eos:
            return s.key, self._final(s, self._text(s)), "stop", len(s.ids)
        s.ids.append(token)
        text = self._text(s)
        cut = cut_at_stop(text, s.stop)
        if cut != text:
            return s.key, self._final(s, cut), "stop", len(s.ids)
        if len(s.ids) >= s.max_new_tokens:
            return s.key, self._final(s, text), "length", len(s.ids)
        safe = text[:len(text) - s.hold] if s.hold else text
        while safe.endswith("\ufffd"):
            safe = safe[:-1]
        if len(safe) > len(s.sent) and safe.startswith(s.sent):
            piece, s.sent = safe[len(s.sent):], safe
            return s.key, piece, None, len(s.ids)
        return None

    def _text(self, s: _Sequence) -> str:
        return self.tokenizer.decode(s.ids, skip_special_tokens=True)

    @staticmethod
    def _final(s: _Sequence, text: str) -> str:
        piece = text[len(s.sent):] if text.startswith(s.sent) else ""
        s.sent = text
        return piece
