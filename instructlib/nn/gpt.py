"""Chapter 03: TinyGPT, a GPT-2 style decoder (pre-LN, learned positions, GELU MLP, tied embeddings) with a KV cache.

Built from chapter 02's pieces (``MultiHeadAttention``, ``TransformerBlock``, ``LearnedPositionalEmbedding``);
the attention itself runs through ``torch.nn.functional.scaled_dot_product_attention`` for speed (the
from-scratch version in ``instructlib.nn.attention`` computes the same thing and can be swapped in).

* ``model(input_ids)`` returns logits (B, T, V); with ``use_cache=True`` it returns
  ``GPTOutput(logits, past_key_values)``, a ``KVCache`` whose ``cache[i]`` is layer i's ``(k, v)``,
  each (B, H, T, D).
* ``attention_mask`` is the Hugging Face (B, T) 1/0 padding mask over past + new tokens; position ids
  then come from it (``cumsum - 1``, as transformers does), so left-padded batches give the same
  logits for their real tokens as unpadded rows do.
* ``to_hf()`` / ``TinyGPT.from_hf()`` convert to and from ``transformers.GPT2LMHeadModel`` (same logits).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, NamedTuple, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from instructlib.lm.sampling import sample_next
from instructlib.nn.attention import MultiHeadAttention
from instructlib.nn.blocks import LearnedPositionalEmbedding, TransformerBlock

# GELU flavours: our name -> (torch approximate=..., transformers activation_function)
ACTIVATIONS = {"gelu": ("none", "gelu"), "gelu_tanh": ("tanh", "gelu_new")}


@dataclass
class GPTConfig:
    """Hyper-parameters of a TinyGPT (``n_embd`` must be divisible by ``n_head``)."""

    vocab_size: int
    block_size: int
    n_layer: int
    n_head: int
    n_embd: int
    dropout: float = 0.0
    bias: bool = True  # biases in the linear layers and layer norms (GPT-2 has them)
    activation: str = "gelu"  # "gelu" (exact, erf) or "gelu_tanh" (GPT-2's original approximation)
    layer_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"GPTConfig.{name} must be a positive int, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"GPTConfig.n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"GPTConfig.activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")


class KVCache:
    """Keys and values of the tokens seen so far, for every layer, preallocated to ``max_len`` positions.

    Each decoding step appends its new (B, H, T, D) keys and values after the past ones along time;
    ``cache[i]`` is layer i's ``(k, v)`` so far, like the classic tuple-of-tuples cache. Writing into a
    preallocated buffer gives the same tensors as ``torch.cat((past, new), dim=2)`` without copying the
    whole past at every step. The cache is updated in place (meant for inference, not backprop).
    """

    def __init__(self, n_layer: int, max_len: int):
        self.max_len = max_len
        self.lengths = [0] * n_layer
        self.keys: list[Optional[Tensor]] = [None] * n_layer
        self.values: list[Optional[Tensor]] = [None] * n_layer

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, layer: int) -> tuple[Tensor, Tensor]:
        end = self.lengths[layer]
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    @property
    def seq_len(self) -> int:
        """Number of cached positions."""
        return self.lengths[0]

    def append(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store new k, v (B, H, T, D) of ``layer`` after its past ones; return all its keys and values."""
        start, end = self.lengths[layer], self.lengths[layer] + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KVCache holds max_len={self.max_len} positions, {end} needed")
        if self.keys[layer] is None:
            shape = (k.shape[0], k.shape[1], self.max_len, k.shape[3])
            self.keys[layer], self.values[layer] = k.new_empty(shape), v.new_empty(shape)
        self.keys[layer][:, :, start:end] = k
        self.values[layer][:, :, start:end] = v
        self.lengths[layer] = end
        return self[layer]


class GPTOutput(NamedTuple):
    """What ``TinyGPT.forward(..., use_cache=True)`` returns."""

    logits: Tensor
    past_key_values: KVCache


class CausalSelfAttention(MultiHeadAttention):
    """Chapter 02's multi-head attention plus a KV cache: new keys/values are appended along time."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, bias: bool = True):
        super().__init__(d_model, n_heads, dropout=dropout, bias=bias)
        # Same semantics as instructlib.nn.attention.scaled_dot_product_attention (tested); torch's is fused.
        self.attention_fn: Callable[..., Tensor] = F.scaled_dot_product_attention
        self.packed_qkv: Optional[tuple[Tensor, Optional[Tensor]]] = None  # set by TinyGPT.generate

    def pack_qkv(self) -> None:
        """Stack the q/k/v weights into one matrix: one matmul per step instead of three (inference only)."""
        projs = (self.q_proj, self.k_proj, self.v_proj)
        if all(type(p) is nn.Linear for p in projs):  # not when wrapped (e.g. by LoRA)
            b = None if self.q_proj.bias is None else torch.cat([p.bias for p in projs])
            self.packed_qkv = torch.cat([p.weight for p in projs]), b

    def forward(self, x: Tensor, attn_mask: Optional[Tensor] = None, is_causal: bool = False,
                cache: Optional[KVCache] = None, layer: int = 0) -> Tensor:
        """Attend from x (B, T, C) to the cached past and x (appended to ``cache`` as ``layer``)."""
        if self.packed_qkv is None:
            q, k, v = (self.split_heads(p(x)) for p in (self.q_proj, self.k_proj, self.v_proj))
        else:
            q, k, v = (self.split_heads(t) for t in F.linear(x, *self.packed_qkv).split(self.d_model, dim=-1))
        if cache is not None:
            k, v = cache.append(layer, k, v)
        y = self.attention_fn(q, k, v, attn_mask=attn_mask, is_causal=is_causal,
                              dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(self.merge_heads(y))


class Block(TransformerBlock):
    """Chapter 02's pre-LN block with the cached attention above."""

    attention_cls = CausalSelfAttention

    def __init__(self, config: GPTConfig):
        c = config
        super().__init__(c.n_embd, c.n_head, 4 * c.n_embd, c.dropout, bias=c.bias, eps=c.layer_norm_eps,
                         approximate=ACTIVATIONS[c.activation][0])

    def forward(self, x: Tensor, attn_mask: Optional[Tensor] = None, is_causal: bool = False,
                cache: Optional[KVCache] = None, layer: int = 0) -> Tensor:
        """One block over x (B, T, C), its keys and values appended to ``cache`` as ``layer``."""
        x = x + self.dropout(self.attn(self.ln1(x), attn_mask, is_causal, cache, layer))
        return x + self.ffn(self.ln2(x))


def position_ids_from_mask(attention_mask: Tensor) -> Tensor:
    """Positions counted over real tokens only (``cumsum - 1``, 0 on padding), as transformers does."""
    mask = attention_mask.long()
    return (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)


def sdpa_mask(attention_mask: Optional[Tensor], t: int, past_len: int, causal: bool,
              device: torch.device) -> tuple[Optional[Tensor], bool]:
    """(attn_mask, is_causal) for SDPA: T new queries against past_len + T keys, True = may attend."""
    if attention_mask is None:
        if not causal or t == 1:  # one new query may see every past key
            return None, False
        if past_len == 0:
            return None, True  # the fused causal path
    allowed = None
    if causal and t > 1:  # query i sits at absolute position past_len + i
        allowed = torch.ones(t, past_len + t, dtype=torch.bool, device=device).tril(past_len)
    if attention_mask is not None:
        keys = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T_k): padding keys are hidden
        allowed = keys if allowed is None else keys & allowed
    return allowed, False


class TinyGPT(nn.Module):
    """GPT-2 architecture: token + learned position embeddings, pre-LN blocks, final LN, tied LM head."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = c = config
        self.wte = nn.Embedding(c.vocab_size, c.n_embd)
        self.wpe = LearnedPositionalEmbedding(c.block_size, c.n_embd)
        self.drop = nn.Dropout(c.dropout)
        self.h = nn.ModuleList(Block(c) for _ in range(c.n_layer))
        self.ln_f = nn.LayerNorm(c.n_embd, eps=c.layer_norm_eps, bias=c.bias)
        self.lm_head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying: one matrix embeds and un-embeds
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by 1/sqrt(2 * n_layer)
            if name.endswith(("attn.out_proj.weight", "ffn.fc2.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * c.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_parameters(self, non_embedding: bool = False) -> int:
        """Number of parameters (tied weights counted once); optionally without position embeddings."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.wpe.emb.weight.numel() if non_embedding else n

    def hidden_states(self, input_ids: Tensor, attention_mask: Optional[Tensor] = None, causal: bool = True,
                      past_key_values: Optional[KVCache] = None, use_cache: bool = False,
                      position_ids: Optional[Tensor] = None) -> tuple[Tensor, Optional[KVCache]]:
        """Final-layer-norm hidden states (B, T, C) and the new cache (or None); see ``forward``."""
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, time), got shape {tuple(input_ids.shape)}")
        b, t = input_ids.shape
        cache = past_key_values
        if cache is None and use_cache:
            cache = KVCache(self.config.n_layer, self.config.block_size)
        past_len = 0 if cache is None else cache.seq_len
        if cache is not None and len(cache) != self.config.n_layer:
            raise ValueError(f"past_key_values has {len(cache)} layers, the model {self.config.n_layer}")
        if attention_mask is not None and tuple(attention_mask.shape) != (b, past_len + t):
            raise ValueError(f"attention_mask must be (batch, past + new) = {(b, past_len + t)}, "
                             f"got {tuple(attention_mask.shape)}")
        if past_len + t > self.config.block_size:
            raise ValueError(f"sequence of {past_len + t} tokens exceeds block_size={self.config.block_size}")
        x = self.wte(input_ids)
        if position_ids is None and attention_mask is None:
            x = self.wpe(x, offset=past_len)
        else:
            if position_ids is None:
                position_ids = position_ids_from_mask(attention_mask)[:, past_len:]
            x = x + self.wpe.emb(position_ids)
        x = self.drop(x)
        mask, is_causal = sdpa_mask(attention_mask, t, past_len, causal, x.device)
        for i, block in enumerate(self.h):
            x = block(x, mask, is_causal, cache, i)
        return self.ln_f(x), cache

    def forward(self, input_ids: Tensor, attention_mask: Optional[Tensor] = None, causal: bool = True,
                past_key_values: Optional[KVCache] = None, use_cache: bool = False,
                position_ids: Optional[Tensor] = None) -> Union[Tensor, GPTOutput]:
        """Logits (B, T, V) for input_ids (B, T); a ``GPTOutput(logits, past_key_values)`` if use_cache.

        ``attention_mask`` (B, T_past + T) marks real tokens with 1 and padding with 0; ``causal=False``
        lets every position see the whole sequence (masked-LM training); ``past_key_values`` is the cache
        returned by a previous call (updated in place), ``input_ids`` then holding only the new tokens.
        """
        h, cache = self.hidden_states(input_ids, attention_mask, causal, past_key_values, use_cache, position_ids)
        logits = self.lm_head(h)
        return GPTOutput(logits, cache) if use_cache else logits

    @torch.no_grad()
    def generate(self, input_ids: Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: Optional[int] = None, top_p: Optional[float] = None,
                 eos_token_id: Optional[Union[int, Sequence[int]]] = None, attention_mask: Optional[Tensor] = None,
                 use_cache: bool = True, generator: Optional[torch.Generator] = None,
                 pad_token_id: Optional[int] = None, do_sample: Optional[bool] = None) -> Tensor:
        """Continue input_ids (B, T) by up to max_new_tokens; returns (B, T + new) token ids.

        ``do_sample=False`` (as in transformers) or ``temperature == 0`` means greedy decoding
        (argmax); otherwise tokens are sampled with
        ``instructlib.lm.sampling.sample_next`` (temperature, then top-k, then top-p). Batches are
        left-padded with ``attention_mask`` marking real tokens. A row that produced ``eos_token_id``
        gets ``pad_token_id`` (default: the first eos id) afterwards; generation stops when every
        row has finished. With ``use_cache`` each step feeds only the newest token; once the text is
        longer than ``block_size``, each step re-reads the last ``block_size`` tokens (no cache), as
        the cache-less mode does all along.
        """
        if max_new_tokens < 0 or temperature < 0:
            raise ValueError(f"need max_new_tokens >= 0 and temperature >= 0, got {max_new_tokens}, {temperature}")
        if do_sample is False:
            temperature = 0.0
        was_training = self.training
        self.eval()
        try:
            for block in self.h:
                block.attn.pack_qkv()
            return self._generate(input_ids, max_new_tokens, temperature, top_k, top_p, eos_token_id,
                                  attention_mask, use_cache, generator, pad_token_id)
        finally:
            for block in self.h:
                block.attn.packed_qkv = None
            self.train(was_training)

    def _generate(self, input_ids: Tensor, max_new_tokens: int, temperature: float, top_k: Optional[int],
                  top_p: Optional[float], eos_token_id: Optional[Union[int, Sequence[int]]],
                  attention_mask: Optional[Tensor], use_cache: bool, generator: Optional[torch.Generator],
                  pad_token_id: Optional[int]) -> Tensor:
        """The decoding loop of ``generate`` (model in eval mode, q/k/v packed)."""
        ids, block = input_ids, self.config.block_size
        mask = attention_mask
        if mask is not None and bool(mask.all()):
            mask = None  # no padding: take the fast unmasked path
        eos = None
        if eos_token_id is not None:
            eos = torch.tensor([eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id),
                               device=ids.device)
            pad = int(eos[0]) if pad_token_id is None else pad_token_id
            finished = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
        pos = None if mask is None else position_ids_from_mask(mask)[:, -1:]
        past = None
        for _ in range(max_new_tokens):
            if past is not None and ids.shape[1] <= block:  # cached: feed only the newest token
                pos = None if pos is None else pos + 1
                h, past = self.hidden_states(ids[:, -1:], mask, past_key_values=past, use_cache=True,
                                             position_ids=pos)
            else:  # (re)read the last block_size tokens
                ctx_mask = None if mask is None else mask[:, -block:]
                h, past = self.hidden_states(ids[:, -block:], ctx_mask,
                                             use_cache=use_cache and ids.shape[1] < block)
            logits = self.lm_head(h[:, -1])
            nxt = sample_next(logits, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)
            if eos is not None:
                nxt = nxt.masked_fill(finished, pad)
                finished |= torch.isin(nxt, eos)
            ids = torch.cat((ids, nxt[:, None]), dim=1)
            if mask is not None:
                mask = torch.cat((mask, mask.new_ones(mask.shape[0], 1)), dim=1)
            if eos is not None and bool(finished.all()):
                break
        return ids

    # ---- transformers interoperability -------------------------------------------------------

    def _hf_pairs(self):
        """(transformers name, our name, transpose?) for every tensor except the fused qkv."""
        yield "transformer.wte.weight", "wte.weight", False
        yield "transformer.wpe.weight", "wpe.emb.weight", False
        for i in range(self.config.n_layer):
            hf, us = f"transformer.h.{i}.", f"h.{i}."
            for a, b, conv in (("ln_1", "ln1", False), ("ln_2", "ln2", False), ("attn.c_proj", "attn.out_proj", True),
                               ("mlp.c_fc", "ffn.fc1", True), ("mlp.c_proj", "ffn.fc2", True)):
                yield hf + a + ".weight", us + b + ".weight", conv  # Conv1D stores (in, out): transposed
                yield hf + a + ".bias", us + b + ".bias", False
        yield "transformer.ln_f.weight", "ln_f.weight", False
        yield "transformer.ln_f.bias", "ln_f.bias", False

    def hf_config(self, **overrides):
        """The ``transformers.GPT2Config`` describing this model (``overrides`` e.g. eos_token_id)."""
        from transformers import GPT2Config

        c = self.config
        kwargs = dict(vocab_size=c.vocab_size, n_positions=c.block_size, n_embd=c.n_embd, n_layer=c.n_layer,
                      n_head=c.n_head, n_inner=4 * c.n_embd, activation_function=ACTIVATIONS[c.activation][1],
                      resid_pdrop=c.dropout, embd_pdrop=c.dropout, attn_pdrop=c.dropout,
                      layer_norm_epsilon=c.layer_norm_eps, tie_word_embeddings=True,
                      bos_token_id=None, eos_token_id=None, pad_token_id=None)
        kwargs.update(overrides)
        return GPT2Config(**kwargs)

    def to_hf(self, **config_overrides):
        """A ``transformers.GPT2LMHeadModel`` with these weights (same logits), on the same device/dtype."""
        from transformers import GPT2LMHeadModel

        ours = self.state_dict()
        c, w = self.config, self.wte.weight
        state = {}
        for hf, us, conv in self._hf_pairs():
            t = ours.get(us)
            if t is None:  # bias=False: GPT-2 always has biases, zeros are equivalent
                t = torch.zeros(ours[us.replace(".bias", ".weight")].shape[0], dtype=w.dtype, device=w.device)
            state[hf] = t.t() if conv else t
        for i in range(c.n_layer):
            p = f"h.{i}.attn."
            state[f"transformer.h.{i}.attn.c_attn.weight"] = torch.cat(
                [ours[p + n + "_proj.weight"] for n in "qkv"], dim=0).t()
            biases = [ours.get(p + n + "_proj.bias") for n in "qkv"]
            state[f"transformer.h.{i}.attn.c_attn.bias"] = (
                torch.cat(biases) if biases[0] is not None else torch.zeros(3 * c.n_embd, dtype=w.dtype,
                                                                             device=w.device))
        state["lm_head.weight"] = ours["lm_head.weight"]
        model = GPT2LMHeadModel(self.hf_config(**config_overrides)).to(device=w.device, dtype=w.dtype)
        model.load_state_dict({k: v.contiguous() for k, v in state.items()}, strict=True)
        return model.train(self.training)

    @classmethod
    def from_hf(cls, model) -> "TinyGPT":
        """A TinyGPT with the weights of a ``transformers.GPT2LMHeadModel`` (same logits)."""
        hc = model.config
        activation = {hf: ours for ours, (_, hf) in ACTIVATIONS.items()}.get(hc.activation_function)
        problems = [name for name, bad in (
            ("activation_function", activation is None),
            ("n_inner", hc.n_inner not in (None, 4 * hc.n_embd)),
            ("scale_attn_by_inverse_layer_idx", hc.scale_attn_by_inverse_layer_idx),
            ("scale_attn_weights", not hc.scale_attn_weights),
            ("add_cross_attention", hc.add_cross_attention),
            ("tie_word_embeddings", not getattr(hc, "tie_word_embeddings", True))) if bad]
        if problems:
            raise ValueError(f"GPT2Config fields not supported by TinyGPT: {', '.join(problems)}")
        config = GPTConfig(vocab_size=hc.vocab_size, block_size=hc.n_positions, n_layer=hc.n_layer,
                           n_head=hc.n_head, n_embd=hc.n_embd, dropout=hc.resid_pdrop, bias=True,
                           activation=activation, layer_norm_eps=hc.layer_norm_epsilon)
        theirs = model.state_dict()
        gpt = cls(config)
        state = {us: theirs[hf].t() if conv else theirs[hf] for hf, us, conv in gpt._hf_pairs()}
        for i in range(config.n_layer):
            w = theirs[f"transformer.h.{i}.attn.c_attn.weight"].t()  # (3C, C)
            b = theirs[f"transformer.h.{i}.attn.c_attn.bias"]
            for n, wn, bn in zip("qkv", w.chunk(3, dim=0), b.chunk(3)):
                state[f"h.{i}.attn.{n}_proj.weight"], state[f"h.{i}.attn.{n}_proj.bias"] = wn, bn
        state["lm_head.weight"] = state["wte.weight"]
        ref = model.transformer.wte.weight
        gpt.load_state_dict({k: v.contiguous() for k, v in state.items()}, strict=True)
        return gpt.to(device=ref.device, dtype=ref.dtype).train(model.training)

    def config_dict(self) -> dict:
        """The config as a plain dict (for saving next to a state_dict)."""
        return asdict(self.config)
