"""Chapter 03: the course's own base model, built once and cached — its BPE tokenizer and TinyGPT
pretrained with ``pretrain.pretrain_config(profile)``.

Both live under ``cache_dir()/tinygpt-[tokenizer-]<profile>-<hash>``; the hash covers the recipe and
every byte of the corpus, so a changed recipe never reuses a stale model. Every later chapter gets
them through ``load_model("tinygpt")`` / ``load_tokenizer("tinygpt")``.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Union

import torch

from ..config import Profile, as_profile, cache_dir, get_device, without_default_threads
from ..corpus import CORPUS_VERSION, corpus_digest, load_corpus
from ..files import build_once
from ..nn.gpt import GPTConfig, TinyGPT
from ..nn.optim import History
from ..pretrain import RECIPE_VERSION, encode_documents, perplexity, pretrain_config, train
from ..tokenization import load_bpe, save_tokenizer, train_bpe

ProfileLike = Union[None, str, Profile]


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:10]


def course_tokenizer_dir(profile: ProfileLike = None) -> Path:
    """Cache directory of the course tokenizer for ``profile`` (trained on first use)."""
    p = as_profile(profile)
    cfg = pretrain_config(p)
    key = _key("tokenizer", cfg.vocab_size, cfg.corpus, CORPUS_VERSION, corpus_digest(cfg.corpus))

    def build(out: Path) -> None:
        save_tokenizer(train_bpe(load_corpus("train", cfg.corpus), cfg.vocab_size,
                                 model_max_length=cfg.block_size), out)

    return build_once(cache_dir() / f"tinygpt-tokenizer-{p.name}-{key}", build)


def load_course_tokenizer(profile: ProfileLike = None):
    """The course BPE tokenizer (``PreTrainedTokenizerFast``) for ``profile``, trained and cached on first use."""
    return load_bpe(course_tokenizer_dir(profile))


def pretrain_course_model(out: Path, cfg, tokenizer, progress: bool = True) -> None:
    """Pretrain TinyGPT with recipe ``cfg`` on its corpus; write weights, tokenizer and ``meta.json`` to ``out``."""
    train_ids = encode_documents(tokenizer, load_corpus("train", cfg.corpus))
    heldout_ids = encode_documents(tokenizer, load_corpus("heldout", cfg.corpus))
    torch.manual_seed(cfg.seed)
    model = TinyGPT(cfg.gpt_config(len(tokenizer))).to(get_device())
    start = time.perf_counter()
    history = train(model, train_ids, cfg, heldout=heldout_ids, progress=progress)
    seconds = time.perf_counter() - start
    ppl = perplexity(model, heldout_ids, cfg.block_size)
    torch.save(model.cpu().state_dict(), out / "model.pt")
    save_tokenizer(tokenizer, out / "tokenizer")
    meta = {"gpt_config": model.config_dict(), "pretrain_config": asdict(cfg), "profile": cfg.corpus,
            "parameters": model.num_parameters(), "train_tokens": len(train_ids),
            "heldout_tokens": len(heldout_ids), "heldout_perplexity": ppl, "pretrain_seconds": seconds,
            "torch_threads": cfg.threads or torch.get_num_threads(), "history": {"train": history.train, "eval": history.eval}}
    (out / "meta.json").write_text(json.dumps(meta, indent=1))


def load_model_dir(path: Path) -> TinyGPT:
    """A TinyGPT written by ``pretrain_course_model`` (eval mode, CPU)."""
    meta = json.loads((Path(path) / "meta.json").read_text())
    model = TinyGPT(GPTConfig(**meta["gpt_config"]))
    model.load_state_dict(torch.load(Path(path) / "model.pt", map_location="cpu", weights_only=True))
    return model.eval()


def course_model_dir(profile: ProfileLike = None, progress: bool = True) -> Path:
    """Cache directory of the course model (weights, config, tokenizer, history), trained on first use."""
    p = as_profile(profile)
    cfg = pretrain_config(p)
    tok_dir = course_tokenizer_dir(p)
    key = _key("model", RECIPE_VERSION, without_default_threads(asdict(cfg)), tok_dir.name)
    return build_once(cache_dir() / f"tinygpt-{p.name}-{key}",
                      lambda out: pretrain_course_model(out, cfg, load_bpe(tok_dir), progress))


def load_course_model(profile: ProfileLike = None, progress: bool = True) -> TinyGPT:
    """The pretrained course TinyGPT for ``profile`` (eval mode, CPU), trained and cached on first use."""
    return load_model_dir(course_model_dir(profile, progress))


def course_model_meta(profile: ProfileLike = None) -> dict:
    """Training record of the course model: sizes, held-out perplexity, seconds and loss ``History``."""
    meta = json.loads((course_model_dir(profile) / "meta.json").read_text())
    meta["history"] = History(**meta["history"])
    return meta
