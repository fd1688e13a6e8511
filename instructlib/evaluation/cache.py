"""Chapter 09: the evaluation cache — hashes of models and data, JSON files on disk, cached chat replies.

A model is identified by a hash of its weights and chat template (or by its name when it has no
weights, such as a ``ScriptedLLM``); anything else by a hash of its JSON. Entries are JSON files under
``cache_dir()/evaluation/<kind>/<key>.json``, written atomically; an unreadable file is a miss.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from instructlib.config import cache_dir
from instructlib.files import atomic_write_json


def digest(obj: Any, length: int = 20) -> str:
    """A short SHA-256 (``length`` hex digits) of ``obj``'s canonical JSON."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:length]


def model_fingerprint(llm) -> str:
    """A hash of the model's weights (and chat template); ``name:<name>`` for models without weights."""
    model = getattr(llm, "model", None)
    if model is None or not hasattr(model, "state_dict"):
        return f"name:{getattr(llm, 'name', type(llm).__name__)}"
    h = hashlib.sha256()
    for key, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{key}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(-1).view(torch.uint8).numpy() if t.numel() else b"")
    template = getattr(getattr(llm, "tokenizer", None), "chat_template", None)
    h.update(str(template).encode())
    return h.hexdigest()[:20]


class Cache:
    """JSON files under ``root`` (default ``cache_dir()/evaluation``); ``enabled=False`` never reads or writes."""

    def __init__(self, root: Optional[Path] = None, enabled: bool = True):
        self.root, self.enabled = (root or cache_dir() / "evaluation"), enabled

    def get(self, kind: str, key: str) -> Optional[dict]:
        """The stored object, or None (missing, unreadable or disabled)."""
        if not self.enabled:
            return None
        try:
            return json.loads((self.root / kind / f"{key}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def put(self, kind: str, key: str, obj: dict) -> None:
        """Store ``obj`` atomically (no-op when disabled)."""
        if self.enabled:
            atomic_write_json(self.root / kind / f"{key}.json", obj)


def cached_chat(llm, conversations: Sequence[Sequence[dict]], *, cache: Optional[Cache] = None, **settings) -> list[str]:
    """``llm.chat(conversations, **settings)``, answered from the cache when the same call was made before.

    Only deterministic calls are cached (``temperature`` 0, the default); ``progress`` does not count.
    """
    if cache is None or not cache.enabled or settings.get("temperature", 0.0) != 0.0:
        return llm.chat(list(conversations), **settings)
    key = digest(["chat", model_fingerprint(llm), [list(c) for c in conversations],
                  {k: v for k, v in settings.items() if k != "progress"}])
    hit = cache.get("chats", key)
    if hit is not None:
        return hit["replies"]
    replies = llm.chat(list(conversations), **settings)
    cache.put("chats", key, {"replies": replies})
    return replies
