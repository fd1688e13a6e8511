"""Chapter 10: the online-learning loop — collect feedback, label it, retrain, gate, redeploy.

1. **Collect.** The server appends every answered request and every ``/v1/feedback`` to two JSONL
   logs through ``files.JSONLAppender`` (one whole line per write under a lock, fsynced; a line torn
   by ``kill -9`` is cut off on the next open), after ``redact.redact`` removed what must not be kept.
2. **Label.** ``label`` joins feedback with its request and decides ``accept`` (thumbs up: the
   answer becomes a training record), ``correct`` (a correction was given: it becomes the output) or
   ``reject`` (thumbs down without a correction, unknown request, or a record that fails
   validation). Every decision carries its reason.
3. **Retrain.** ``mix_with_replay`` mixes the new records with replayed original training data, so
   the update does not forget what the model already did well; ``train_adapter`` fine-tunes a LoRA
   adapter with chapter 05's loop and peft.
4. **Gate.** ``gate`` compares exact match of the candidate and the served model on a held-out set
   that feedback never touches. Two rules: the point estimate may not fall by more than
   ``tolerance``, or (``margin=``) non-inferiority — the lower end of the one-sided ``confidence``
   interval of the paired difference must stay above ``-margin``. ``gate_outcomes`` decides the same
   from per-item verdicts (teacher-forced exact match) instead of answers.
5. **Redeploy.** ``AdapterRegistry`` keeps versioned adapter directories and which one is active;
   the server swaps to a version (or rolls back) without restarting.
"""
from __future__ import annotations

import math
import random
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

from ..data.formats import from_messages
from ..data.records import DataError, Record, record_from_dict
from ..files import JSONLAppender, atomic_write_json, atomic_write_text, read_jsonl_lenient
from .redact import redact, redact_obj

REQUESTS_LOG, FEEDBACK_LOG = "requests.jsonl", "feedback.jsonl"


class FeedbackStore:
    """The server's two append-only logs (redacted) and the set of request ids it has answered."""

    def __init__(self, log_dir: Path, remember: int = 100_000):
        self.dir = Path(log_dir)
        self.requests = JSONLAppender(self.dir / REQUESTS_LOG)
        self.feedback = JSONLAppender(self.dir / FEEDBACK_LOG)
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._remember, self._lock = remember, threading.Lock()
        for row in read_jsonl_lenient(self.dir / REQUESTS_LOG)[-remember:]:
            self._ids[row["id"]] = None

    def log_request(self, request_id: str, kind: str, model: str, adapter: Optional[str], request: dict,
                    outputs: list[str]) -> None:
        """Append one answered request (prompt or messages and outputs redacted)."""
        self.requests.append({"id": request_id, "created": time.time(), "kind": kind, "model": model,
                              "adapter": adapter, "request": redact_obj(request),
                              "outputs": [redact(o) for o in outputs]})
        with self._lock:
            self._ids[request_id] = None
            while len(self._ids) > self._remember:
                self._ids.popitem(last=False)

    def knows(self, request_id: str) -> bool:
        """True when this server answered ``request_id`` (and still remembers it)."""
        with self._lock:
            return request_id in self._ids

    def log_feedback(self, request_id: str, rating: str, correction: Optional[str]) -> dict:
        """Append one feedback line (correction redacted) and return it."""
        row = {"id": f"fb-{uuid.uuid4().hex[:24]}", "created": time.time(), "request_id": request_id,
               "rating": rating, "correction": None if correction is None else redact(correction)}
        self.feedback.append(row)
        return row

    def close(self) -> None:
        """Close both logs."""
        self.requests.close()
        self.feedback.close()


# --- labelling -------------------------------------------------------------------------------------

@dataclass
class Label:
    """One labelling decision: what happened to a feedback line and why."""

    feedback_id: str
    request_id: str
    decision: str                 # accept | correct | reject
    reason: str
    record: Optional[dict] = None  # {"instruction", "input", "output"} when accepted or corrected


def request_to_record(request: dict, output: str) -> Record:
    """The training record a logged request stands for (chat: user turn split at the first blank line)."""
    if "messages" in request:
        messages = [m for m in request["messages"] if m.get("role") != "system"]
        if not messages or messages[-1].get("role") != "user":
            raise DataError("<request>", None, "messages", "the last message is not a user turn")
        return from_messages(messages[-1:] + [{"role": "assistant", "content": output}])
    if isinstance(request.get("prompt"), str):
        return Record(request["prompt"], "", output)
    raise DataError("<request>", None, "request", "neither 'messages' nor a single 'prompt'")


def label(requests: Sequence[dict], feedback: Sequence[dict]) -> list[Label]:
    """Decide accept / correct / reject for each request's latest feedback, validating the records."""
    by_id = {r["id"]: r for r in requests}
    latest: dict[str, dict] = {}
    for fb in feedback:
        latest[fb["request_id"]] = fb  # a later rating of the same answer replaces the earlier one
    labels = []
    for rid, fb in latest.items():
        req = by_id.get(rid)
        if req is None:
            labels.append(Label(fb["id"], rid, "reject", "unknown request id"))
            continue
        correction = fb.get("correction")
        if correction is not None and correction.strip():
            decision, output = "correct", correction.strip()
        elif fb["rating"] == "up":
            decision, output = "accept", req["outputs"][0].strip()
        else:
            labels.append(Label(fb["id"], rid, "reject", "rated down without a correction"))
            continue
        try:
            record = request_to_record(req["request"], output)
            record = record_from_dict(record.to_dict(), "<feedback>", None)  # the chapter 04 schema check
            if not record.output:
                raise DataError("<feedback>", None, "output", "empty answer")
        except DataError as e:
            labels.append(Label(fb["id"], rid, "reject", f"invalid record: {e.problem.field}: {e.problem.message}"))
            continue
        labels.append(Label(fb["id"], rid, decision, "rated up" if decision == "accept" else "corrected",
                            record.to_dict()))
    return labels


def label_logs(log_dir: Path, out: Optional[Path] = None) -> list[Label]:
    """``label`` over a server's log directory; optionally write the decisions as JSONL."""
    from ..files import atomic_write_jsonl

    labels = label(read_jsonl_lenient(Path(log_dir) / REQUESTS_LOG), read_jsonl_lenient(Path(log_dir) / FEEDBACK_LOG))
    if out is not None:
        atomic_write_jsonl(out, [asdict(lab) for lab in labels])
    return labels


def labelled_records(labels: Sequence[Label]) -> list[Record]:
    """The training records of accepted and corrected labels, sorted by their text.

    Concurrent users are logged in whatever order their threads ran; sorting makes a retraining on
    the same feedback see the same sequence, so a rerun reproduces the round.
    """
    records = [Record(**lab.record) for lab in labels if lab.decision in ("accept", "correct")]
    return sorted(records, key=lambda r: (r.instruction, r.input, r.output))


def mix_with_replay(new: Sequence[Record], replay: Sequence[Record], replay_ratio: float = 1.0,
                    seed: int = 0) -> list[Record]:
    """``new`` plus ``replay_ratio * len(new)`` records drawn from ``replay`` (without replacement), shuffled."""
    rng = random.Random(seed)
    k = min(len(replay), round(replay_ratio * len(new)))
    mixed = list(new) + rng.sample(list(replay), k)
    rng.shuffle(mixed)
    return mixed


# --- the evaluation gate ---------------------------------------------------------------------------

@dataclass
class GateResult:
    """Exact match of the served and the candidate model on the held-out set, and the decision."""

    served: float
    candidate: float
    difference: float
    interval: tuple[float, float]   # 95 % interval of the paired difference
    n: int
    tolerance: float
    passed: bool
    margin: Optional[float] = None       # set: the non-inferiority rule decided
    lower_bound: Optional[float] = None  # one-sided lower confidence bound of the paired difference
    confidence: float = 0.95

    def __str__(self) -> str:
        verdict = "PASS" if self.passed else "REJECT"
        if self.margin is None:
            rule = f"tolerance {self.tolerance:.1%}"
        else:
            rule = (f"non-inferiority: one-sided {self.confidence:.0%} lower bound {self.lower_bound:+.1%} "
                    f"vs margin -{self.margin:.1%}")
        return (f"gate {verdict}: exact match {self.served:.1%} -> {self.candidate:.1%} "
                f"(difference {self.difference:+.1%}, 95% CI [{self.interval[0]:+.1%}, {self.interval[1]:+.1%}], "
                f"n={self.n}, {rule})")


def _paired_mean_se(a: Sequence[bool], b: Sequence[bool]) -> tuple[float, float]:
    """Mean of ``b - a`` over paired outcomes and its standard error (sample variance, n - 1)."""
    d = [float(y) - float(x) for x, y in zip(a, b)]
    n = len(d)
    mean = sum(d) / n
    var = sum((x - mean) ** 2 for x in d) / max(1, n - 1)
    return mean, math.sqrt(var / n)


def paired_interval(a: Sequence[bool], b: Sequence[bool]) -> tuple[float, tuple[float, float]]:
    """Mean of ``b - a`` over paired 0/1 outcomes and its normal-approximation 95 % interval."""
    mean, se = _paired_mean_se(a, b)
    half = 1.96 * se
    return mean, (mean - half, mean + half)


def non_inferiority_bound(a: Sequence[bool], b: Sequence[bool], confidence: float = 0.95) -> float:
    """Lower end of the one-sided ``confidence`` normal interval of the mean paired difference ``b - a``."""
    from statistics import NormalDist

    if not 0.5 <= confidence < 1:
        raise ValueError(f"confidence must be in [0.5, 1), got {confidence!r}")
    if len(a) != len(b) or not a:
        raise ValueError("non_inferiority_bound needs two equally long, non-empty lists of outcomes")
    mean, se = _paired_mean_se(a, b)
    return mean - NormalDist().inv_cdf(confidence) * se


def gate(served_answers: Sequence[str], candidate_answers: Sequence[str], examples: Sequence,
         tolerance: float = 0.0, *, margin: Optional[float] = None, confidence: float = 0.95) -> GateResult:
    """Decide whether the candidate may replace the served model, from exact match on ``examples``.

    Without ``margin``: pass when the candidate's exact match is at least the served model's minus
    ``tolerance`` (a point estimate, blind to the set's noise). With ``margin`` (non-inferiority):
    pass when the one-sided ``confidence`` lower bound of the paired difference is at least ``-margin``.
    """
    from ..data.verifiable import _check

    if not (len(served_answers) == len(candidate_answers) == len(examples)) or not examples:
        raise ValueError("gate needs one answer per example from each model, and at least one example")
    return gate_outcomes([_check(p, e) for p, e in zip(served_answers, examples)],
                         [_check(p, e) for p, e in zip(candidate_answers, examples)],
                         tolerance, margin=margin, confidence=confidence)


def gate_outcomes(served: Sequence[bool], candidate: Sequence[bool], tolerance: float = 0.0, *,
                  margin: Optional[float] = None, confidence: float = 0.95) -> GateResult:
    """``gate`` on per-item exact-match verdicts (e.g. ``train.exact.greedy_exact``'s) instead of answers."""
    if len(served) != len(candidate) or not served:
        raise ValueError("gate needs one verdict per item from each model, and at least one item")
    if margin is not None:
        if not (isinstance(margin, (int, float)) and 0 <= margin < 1):
            raise ValueError(f"margin must be a number in [0, 1) (a share of exact match), got {margin!r}")
        if tolerance != 0.0:
            raise ValueError("give either tolerance (point-estimate rule) or margin (non-inferiority), not both")
    if not 0.5 <= confidence < 1:
        raise ValueError(f"confidence must be in [0.5, 1), got {confidence!r}")
    a, b = [bool(x) for x in served], [bool(x) for x in candidate]
    diff, ci = paired_interval(a, b)
    served_em, candidate_em = sum(a) / len(a), sum(b) / len(b)
    if margin is None:
        return GateResult(served_em, candidate_em, diff, ci, len(a), tolerance,
                          candidate_em >= served_em - tolerance - 1e-12, confidence=confidence)
    lower = non_inferiority_bound(a, b, confidence)
    return GateResult(served_em, candidate_em, diff, ci, len(a), tolerance, lower >= -margin - 1e-12, margin, lower,
                      confidence)


# --- the versioned adapter directory ---------------------------------------------------------------

class AdapterRegistry:
    """``root/versions/vNNNN/`` (immutable adapter directories), ``root/ACTIVE`` and ``root/history.jsonl``.

    ``add`` copies an adapter in as the next version; ``activate`` records which version serves;
    ``rollback`` undoes the last activation (repeatedly: v1 -> v2 -> rollback -> v1 -> rollback ->
    base). ``None`` means the base model without adapter.
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        (self.root / "versions").mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def versions_list(self) -> list[str]:
        """Version names, oldest first."""
        return sorted(p.name for p in (self.root / "versions").iterdir() if p.is_dir() and p.name.startswith("v"))

    def versions(self) -> list[dict]:
        """Each version's metadata (``meta.json``) plus its name."""
        import json

        out = []
        for v in self.versions_list():
            meta_path = self.path(v) / "meta.json"
            meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
            out.append({"version": v, **meta})
        return out

    def path(self, version: str) -> Path:
        """Directory of ``version`` (``KeyError`` when it does not exist)."""
        p = self.root / "versions" / version
        if not p.is_dir():
            raise KeyError(version)
        return p

    def add(self, adapter_dir: Path, meta: Optional[dict] = None) -> str:
        """Copy ``adapter_dir`` in as the next version (atomically) and return its name."""
        from ..files import build_once

        with self._lock:
            existing = self.versions_list()
            version = f"v{(int(existing[-1][1:]) + 1) if existing else 1:04d}"

            def build(tmp: Path) -> None:
                shutil.copytree(adapter_dir, tmp, dirs_exist_ok=True)
                atomic_write_json(tmp / "meta.json", {"created": time.time(), **(meta or {})})

            build_once(self.root / "versions" / version, build)
        return version

    def _history(self) -> list[dict]:
        return read_jsonl_lenient(self.root / "history.jsonl")

    def current(self) -> Optional[str]:
        """The active version, or None (the base model)."""
        p = self.root / "ACTIVE"
        text = p.read_text().strip() if p.exists() else ""
        return text or None

    def _stack(self) -> list[Optional[str]]:
        """Versions activated and not rolled back, oldest first; the bottom is the base model (None)."""
        stack: list[Optional[str]] = [None]
        for event in self._history():
            if event["action"] == "activate":
                stack.append(event["version"])
            elif len(stack) > 1:
                stack.pop()
        return stack

    def _record(self, event: dict, active: Optional[str]) -> None:
        with self._lock, JSONLAppender(self.root / "history.jsonl") as history:
            history.append({"time": time.time(), **event})
            atomic_write_text(self.root / "ACTIVE", (active or "") + "\n")

    def activate(self, version: Optional[str]) -> None:
        """Make ``version`` (or None: no adapter) the active one, remembering the one it replaces."""
        if version is not None:
            self.path(version)
        self._record({"action": "activate", "version": version}, version)

    def previous(self) -> Optional[str]:
        """The version a rollback would return to (``LookupError`` if nothing was activated)."""
        stack = self._stack()
        if len(stack) < 2:
            raise LookupError("no earlier version to roll back to")
        return stack[-2]

    def rollback(self) -> Optional[str]:
        """Undo the last activation (the one before it serves again); return the version now active."""
        version = self.previous()
        self._record({"action": "rollback", "version": version}, version)
        return version


# --- retraining ------------------------------------------------------------------------------------

DEFAULT_TARGETS = {"gpt2": ["c_attn", "c_proj", "c_fc"], "llama": ["q_proj", "k_proj", "v_proj", "o_proj",
                                                                  "gate_proj", "up_proj", "down_proj"]}


def train_adapter(base_model, tokenizer, records: Sequence[Record], out_dir: Path, *, steps: int = 100,
                  batch_size: int = 16, lr: float = 2e-3, r: int = 16, alpha: int = 32,
                  init_adapter: Optional[Path] = None, seed: int = 0, template: str = "chat",
                  progress: bool = True) -> Path:
    """Fine-tune a peft LoRA adapter on ``records`` with chapter 05's loop; save it to ``out_dir``.

    ``init_adapter`` continues from an earlier adapter (the one being served) instead of from zero.
    The base model is not modified.
    """
    import copy

    import torch
    from peft import LoraConfig, PeftModel, get_peft_model

    from ..data.collate import DataCollatorForInstructions, encode_dataset
    from ..train import TrainConfig, train

    torch.manual_seed(seed)
    model = copy.deepcopy(base_model)
    if init_adapter is not None:
        peft_model = PeftModel.from_pretrained(model, str(init_adapter), is_trainable=True)
    else:
        targets = DEFAULT_TARGETS.get(model.config.model_type)
        if targets is None:
            raise ValueError(f"no default LoRA targets for model type {model.config.model_type!r}")
        peft_model = get_peft_model(model, LoraConfig(r=r, lora_alpha=alpha, target_modules=targets, lora_dropout=0.0,
                                                      fan_in_fan_out=model.config.model_type == "gpt2"))
    max_len = getattr(model.config, "n_positions", None) or model.config.max_position_embeddings
    data, _ = encode_dataset(list(records), tokenizer, max_len, template)
    config = TrainConfig(max_steps=steps, batch_size=min(batch_size, len(data)), lr=lr,
                         warmup_steps=max(1, steps // 20), min_lr_ratio=0.1, seed=seed, progress=progress)
    train(peft_model, data, DataCollatorForInstructions(tokenizer), config, device="cpu")
    peft_model.eval()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(str(out_dir))
    return out_dir


def load_with_adapter(base_model, tokenizer, adapter_dir: Optional[Path], name: Optional[str] = None):
    """An ``LLM`` serving ``base_model`` plus the adapter in ``adapter_dir`` merged into a copy (None: the base)."""
    import copy

    from ..models import LLM

    model = copy.deepcopy(base_model)
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    return LLM.wrap(model.eval(), tokenizer, name=name)


def answers(llm, examples: Sequence, template: str = "chat", max_new_tokens: int = 20,
            batch_size: int = 64) -> list[str]:
    """Greedy answers of ``llm`` to verifiable examples (first line, as exact match expects).

    A prompt that leaves no room for ``max_new_tokens`` in the model's context gets the answer ""
    (counted wrong), as the server would refuse it with a 400.
    """
    from ..data.formats import user_content

    conversations = [[{"role": "user", "content": user_content(e.record)}] for e in examples]
    limit = llm._max_length() if hasattr(llm, "_max_length") else None
    fits = [limit is None or len(llm.tokenizer(llm.chat_prompt(c), add_special_tokens=False)["input_ids"])
            + max_new_tokens <= limit for c in conversations]
    texts = iter(llm.chat([c for c, ok in zip(conversations, fits) if ok], max_new_tokens=max_new_tokens,
                          temperature=0.0, batch_size=batch_size, progress=False))
    return [next(texts).split("\n")[0] if ok else "" for ok in fits]

