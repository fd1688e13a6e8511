"""Chapter 10: export a fine-tuned model for serving — merge LoRA, quantize to int8, write GGUF.

* **Merge.** A LoRA adapter adds ``(alpha / r) B A`` to a frozen weight; folding it into the weight
  gives a plain model with no adapter cost at inference. ``merge_peft`` is peft's
  ``merge_and_unload``; ``merge_scratch`` does the same with chapter 05's ``instructlib.nn.lora``;
  ``scratch_from_peft`` copies a peft adapter into our LoRA layers so the two can be compared.
* **int8 dynamic quantization** (CPU): ``quantize_int8`` stores every linear weight as int8 with one
  scale per tensor and quantizes activations on the fly (``torch.ao.quantization.quantize_dynamic``;
  deprecated in favour of torchao but still working in torch 2.13). GPT-2's ``Conv1D`` layers are
  turned into ``nn.Linear`` first, because ``quantize_dynamic`` only knows ``nn.Linear``.
* **GGUF** (llama.cpp's single-file format): ``export_gguf`` writes the weights, the config and the
  byte-level BPE tokenizer with the ``gguf`` package; transformers reads it back with
  ``from_pretrained(dir, gguf_file=...)``. Supported: ``GGUF_ARCHITECTURES`` x ``GGUF_TYPES``; anything
  else raises ``ExportError`` naming what is supported.
"""
from __future__ import annotations

import copy
import io
import warnings
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from torch import nn

from ..files import atomic_write_bytes
from ..nn.lora import LoRALinear, inject_lora, lora_layers, merge_lora

# model_type of the transformers model -> GGUF architecture name. transformers can read many more
# architectures back; these are the ones this exporter writes (and tests).
GGUF_ARCHITECTURES = {"gpt2": "gpt2", "llama": "llama"}
# Tensor types written for 2-D weight matrices (1-D tensors: norms and biases are always F32).
GGUF_TYPES = ("F32", "F16", "Q8_0", "Q4_0")


class ExportError(ValueError):
    """A model or option this exporter does not support; the message says what is supported."""


# --- merging -----------------------------------------------------------------------------------

def merge_peft(peft_model) -> nn.Module:
    """peft's merge: a copy of the base model with every adapter folded into its weights."""
    return copy.deepcopy(peft_model).merge_and_unload()


def unwrap_lora(model: nn.Module) -> nn.Module:
    """Replace every (merged) ``LoRALinear`` by its base layer, in place: a plain model again."""
    for name, module in list(model.named_modules()):
        if isinstance(module, LoRALinear):
            if not module.merged:
                raise ValueError(f"{name} is not merged; call merge_lora first")
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, module.base)
    return model


def merge_scratch(model: nn.Module) -> nn.Module:
    """Chapter 05's merge on a copy: fold each ``LoRALinear`` update into its weight, drop the wrappers."""
    merged = unwrap_lora(merge_lora(copy.deepcopy(model)))
    merged.requires_grad_(False)
    return merged


def scratch_from_peft(peft_model) -> nn.Module:
    """A copy of the peft model's base with ``instructlib.nn.lora`` layers holding peft's A and B."""
    config = peft_model.peft_config[peft_model.active_adapter]
    if getattr(config, "use_rslora", False) or getattr(config, "use_dora", False):
        raise ExportError("scratch_from_peft supports plain LoRA only (no rsLoRA, no DoRA)")
    base = copy.deepcopy(peft_model).unload()  # base model, adapters removed, weights untouched
    targets = sorted(config.target_modules) if not isinstance(config.target_modules, str) else [config.target_modules]
    names = inject_lora(base, targets, r=config.r, alpha=config.lora_alpha)
    theirs = dict(peft_model.base_model.model.named_modules())
    adapter = peft_model.active_adapter
    with torch.no_grad():
        for name in names:
            ours = base.get_submodule(name)
            ours.lora_A.copy_(theirs[name].lora_A[adapter].weight)
            ours.lora_B.copy_(theirs[name].lora_B[adapter].weight)
    return base.eval()


def max_weight_difference(a: nn.Module, b: nn.Module) -> float:
    """Largest absolute difference between two models' floating-point state dicts (same keys required)."""
    sa, sb = a.state_dict(), b.state_dict()
    if sa.keys() != sb.keys():
        raise ValueError(f"different parameters: {sorted(set(sa) ^ set(sb))[:5]}")
    return max(((sa[k].float() - sb[k].float()).abs().max().item() for k in sa if sa[k].is_floating_point()),
               default=0.0)


# --- int8 dynamic quantization -----------------------------------------------------------------

def conv1d_to_linear(model: nn.Module) -> nn.Module:
    """Replace transformers' ``Conv1D`` (weight stored as (in, out)) by an equal ``nn.Linear``, in place."""
    from transformers.pytorch_utils import Conv1D

    for name, module in list(model.named_modules()):
        if isinstance(module, Conv1D):
            n_in, n_out = module.weight.shape
            linear = nn.Linear(n_in, n_out, bias=module.bias is not None,
                               device=module.weight.device, dtype=module.weight.dtype)
            with torch.no_grad():
                linear.weight.copy_(module.weight.t())
                if module.bias is not None:
                    linear.bias.copy_(module.bias)
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, linear)
    return model


def quantize_int8(model: nn.Module) -> nn.Module:
    """A CPU copy of ``model`` with int8 dynamically quantized linear layers (activations quantized per batch)."""
    model = conv1d_to_linear(copy.deepcopy(model).cpu().float().eval())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization announces its move to torchao
        return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)


def state_dict_bytes(model: nn.Module) -> int:
    """Size of ``torch.save(model.state_dict())`` in bytes: what the weights cost on disk."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


# --- GGUF ----------------------------------------------------------------------------------------

def _tokenizer_metadata(writer, tokenizer) -> None:
    """Write a byte-level BPE tokenizer (vocabulary, merges, special ids, chat template) as GGUF metadata."""
    import json

    import gguf

    state = json.loads(tokenizer.backend_tokenizer.to_str())
    model = state["model"]
    if model.get("type") != "BPE" or not any(p.get("type") == "ByteLevel" for p in _pre_tokenizers(state)):
        raise ExportError("GGUF export writes byte-level BPE tokenizers only (GPT-2 style, tokenizer.ggml.model "
                          f"'gpt2'); this tokenizer is {model.get('type')!r}")
    vocab = {**model["vocab"], **{t["content"]: t["id"] for t in state.get("added_tokens", [])}}
    size = max(vocab.values()) + 1
    tokens = [f"[PAD{i}]" for i in range(size)]
    types = [gguf.TokenType.UNUSED] * size
    for token, index in vocab.items():
        tokens[index], types[index] = token, gguf.TokenType.NORMAL
    for t in state.get("added_tokens", []):
        types[t["id"]] = gguf.TokenType.CONTROL if t.get("special") else gguf.TokenType.USER_DEFINED
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for key, add in (("bos_token_id", writer.add_bos_token_id), ("eos_token_id", writer.add_eos_token_id),
                     ("pad_token_id", writer.add_pad_token_id), ("unk_token_id", writer.add_unk_token_id)):
        value = getattr(tokenizer, key, None)
        if value is not None:
            add(value)
    if getattr(tokenizer, "chat_template", None):
        writer.add_chat_template(tokenizer.chat_template)


def _pre_tokenizers(state: dict) -> list[dict]:
    pre = state.get("pre_tokenizer") or {}
    return pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]


def _permute_rope(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's q/k row order for rotary embeddings (transformers undoes it when loading)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _gguf_tensors(model: nn.Module, arch: str):
    """(GGUF name, float32 numpy array) for every tensor of a gpt2 or llama transformers model."""
    import gguf

    cfg = model.config
    arch_enum = {"gpt2": gguf.MODEL_ARCH.GPT2, "llama": gguf.MODEL_ARCH.LLAMA}[arch]
    names = gguf.get_tensor_name_map(arch_enum, cfg.num_hidden_layers)
    state = model.state_dict()
    tied = getattr(cfg, "tie_word_embeddings", False)
    for hf_name, tensor in state.items():
        if hf_name.endswith(".attn.bias") or hf_name.endswith(".attn.masked_bias") or "rotary_emb" in hf_name:
            continue  # buffers, not weights
        if hf_name == "lm_head.weight" and tied:
            continue  # the reader ties it back to the token embedding
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ExportError(f"no GGUF name for tensor {hf_name!r} of architecture {arch!r}")
        data = tensor.detach().float().cpu().numpy()
        if arch == "gpt2" and data.ndim == 2 and any(hf_name.endswith(s) for s in (
                "attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")):
            data = data.T  # Conv1D stores (in, out); GGUF wants (out, in)
        if arch == "llama" and hf_name.endswith("self_attn.q_proj.weight"):
            data = _permute_rope(data, cfg.num_attention_heads)
        if arch == "llama" and hf_name.endswith("self_attn.k_proj.weight"):
            data = _permute_rope(data, cfg.num_key_value_heads)
        yield name, np.ascontiguousarray(data)


def _hparams(writer, model: nn.Module, arch: str) -> None:
    cfg = model.config
    if arch == "gpt2":
        if cfg.activation_function not in ("gelu_new", "gelu", "gelu_pytorch_tanh"):
            raise ExportError(f"GGUF gpt2 uses the tanh GELU; activation {cfg.activation_function!r} is not supported")
        writer.add_context_length(cfg.n_positions)
        writer.add_embedding_length(cfg.n_embd)
        writer.add_feed_forward_length(cfg.n_inner or 4 * cfg.n_embd)
        writer.add_block_count(cfg.n_layer)
        writer.add_head_count(cfg.n_head)
        writer.add_layer_norm_eps(cfg.layer_norm_epsilon)
    else:
        rope_params = dict(getattr(cfg, "rope_parameters", None) or {"rope_theta": getattr(cfg, "rope_theta", 10000.0)})
        if rope_params.get("rope_type", "default") != "default" or getattr(cfg, "attention_bias", False) \
                or getattr(cfg, "mlp_bias", False):
            raise ExportError("GGUF llama export supports plain Llama (default RoPE, no biases)")
        rope = rope_params["rope_theta"]
        writer.add_context_length(cfg.max_position_embeddings)
        writer.add_embedding_length(cfg.hidden_size)
        writer.add_feed_forward_length(cfg.intermediate_size)
        writer.add_block_count(cfg.num_hidden_layers)
        writer.add_head_count(cfg.num_attention_heads)
        writer.add_head_count_kv(cfg.num_key_value_heads)
        writer.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
        writer.add_rope_freq_base(float(rope))
        writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
        writer.add_vocab_size(cfg.vocab_size)


def gguf_architecture(model: nn.Module) -> str:
    """The GGUF architecture name of a transformers model, or ``ExportError`` listing the supported ones."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in GGUF_ARCHITECTURES:
        raise ExportError(f"GGUF export supports model types {sorted(GGUF_ARCHITECTURES)}; got {model_type!r} "
                          f"({type(model).__name__}). Merge adapters first (merge_peft) and export a "
                          "transformers model; TinyGPT: use TinyGPT.to_hf().")
    return GGUF_ARCHITECTURES[model_type]


def export_gguf(model: nn.Module, tokenizer, path: Union[str, Path], qtype: str = "F32",
                name: Optional[str] = None) -> Path:
    """Write ``model`` (transformers gpt2 or llama) and its byte-level BPE tokenizer to one GGUF file.

    ``qtype`` is the type of 2-D weight matrices (``GGUF_TYPES``); a matrix whose rows do not split
    into the quantization block (32 numbers) is written as F16 instead, as llama.cpp does.
    """
    import gguf

    if qtype not in GGUF_TYPES:
        raise ExportError(f"GGUF type {qtype!r} is not supported; choose one of {', '.join(GGUF_TYPES)}")
    if hasattr(model, "peft_config"):
        raise ExportError("this is a peft model: merge the adapter first (merge_peft) and export the result")
    arch = gguf_architecture(model)
    path = Path(path)
    target = getattr(gguf.GGMLQuantizationType, qtype)
    tmp = path.with_name(f".{path.name}.writing")
    writer = gguf.GGUFWriter(str(tmp), arch)
    writer.add_name(name or path.stem)
    writer.add_file_type({"F32": gguf.LlamaFileType.ALL_F32, "F16": gguf.LlamaFileType.MOSTLY_F16,
                          "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0, "Q4_0": gguf.LlamaFileType.MOSTLY_Q4_0}[qtype])
    _hparams(writer, model, arch)
    _tokenizer_metadata(writer, tokenizer)
    for tensor_name, data in _gguf_tensors(model, arch):
        if data.ndim < 2 or qtype == "F32":
            writer.add_tensor(tensor_name, data.astype(np.float32))
        elif qtype == "F16" or data.shape[-1] % gguf.GGML_QUANT_SIZES[target][0]:
            writer.add_tensor(tensor_name, data.astype(np.float16))
        else:
            writer.add_tensor(tensor_name, gguf.quants.quantize(data, target), raw_dtype=target)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    atomic_write_bytes(path, tmp.read_bytes())
    tmp.unlink()
    return path


def gguf_metadata(path: Union[str, Path]) -> dict:
    """The scalar metadata of a GGUF file (architecture, sizes, token ids), read with the ``gguf`` package."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    meta = {}
    for key, field in reader.fields.items():
        if len(field.types) == 1 and field.types[0] != gguf.GGUFValueType.ARRAY:
            value = field.contents()
            meta[key] = value
    return meta


def gguf_config_fixes(path: Union[str, Path]) -> dict:
    """Config overrides transformers needs to rebuild a gpt2 GGUF exactly.

    transformers 5 maps ``gpt2.context_length`` to ``n_ctx`` (a name GPT2Config no longer uses), so
    the position table would get the default 1024 rows; and it leaves GPT-2's token ids (50256).
    """
    meta = gguf_metadata(path)
    if meta.get("general.architecture") != "gpt2":
        return {}
    ids = {k: meta.get(f"tokenizer.ggml.{g}") for k, g in (("bos_token_id", "bos_token_id"),
                                                          ("eos_token_id", "eos_token_id"),
                                                          ("pad_token_id", "padding_token_id"))}
    return {"n_positions": int(meta["gpt2.context_length"]), **{k: v for k, v in ids.items() if v is not None}}


def load_gguf(path: Union[str, Path]):
    """(model, tokenizer) read back from a GGUF file by transformers (``gguf_file=``), de-quantized to float32."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                 **gguf_config_fixes(path)).eval()
    model.hf_quantizer = None  # de-quantized weights: allow save_pretrained
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
