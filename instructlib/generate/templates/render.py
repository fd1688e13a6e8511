"""Chapter 06: render inputs through templates into instruction records with provenance.

Each input (a dict of template fields, optionally with an ``id``) is rendered through ``per_input``
templates drawn for it alone (``random.Random`` seeded by the run seed and the input's id), so the
result does not depend on the order of the inputs or on what was rendered before: a killed run
resumes through ``JSONLStage`` and ends with exactly the rows of an uninterrupted one.

A row is an Alpaca record plus provenance::

    {"id", "instruction", "input": "", "output", "template_id", "template_name", "task",
     "language", "inverted", "source_id", "seed"}

The whole rendered prompt is the ``instruction`` (PromptSource templates place the input inside the
prompt; a chat turn renders ``instruction`` and ``instruction + "\\n\\n" + input`` the same way, see
``data.formats``). Rows whose (instruction, output) already exist are dropped as duplicates.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Optional, Sequence

from ...config import stable_seed
from ...data.records import DataError
from .promptsource import Template, TemplateError


class RenderError(ValueError):
    """Bad rendering input; ``str()`` names file, line and field."""


@dataclass
class RenderStats:
    """What a rendering run did."""

    written: int = 0
    already_done: int = 0
    duplicates: int = 0
    errors: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (f"{self.written} rows written, {self.already_done} already done, "
                f"{self.duplicates} duplicates dropped, {len(self.errors)} render errors")


def source_id(example: dict) -> str:
    """The example's ``id`` if it has one, else a stable hash of its content."""
    if example.get("id") not in (None, ""):
        return str(example["id"])
    return "sha1:" + hashlib.sha1(repr(sorted(example.items())).encode()).hexdigest()[:16]


def pick_templates(templates: Sequence[Template], sid: str, per_input: int, seed: int) -> list[Template]:
    """The ``per_input`` templates (without repetition) used for the input ``sid``: a function of (seed, sid)."""
    if per_input < 1:
        raise ValueError(f"per_input must be at least 1, got {per_input}")
    rng = random.Random(stable_seed("pick", seed, sid))
    return rng.sample(list(templates), min(per_input, len(templates)))


def row_id(sid: str, template: Template, seed: int) -> str:
    """The key of one rendered row (input, template, seed)."""
    return f"{sid}::{template.id}::{seed}"


def render_example(template: Template, example: dict, seed: int = 0) -> dict:
    """One row: ``template`` applied to ``example`` (the choice filter seeded by seed, template and input)."""
    sid = source_id(example)
    fields = {k: v for k, v in example.items() if k != "id"}
    prompt, target = template.apply(fields, seed=stable_seed("render", seed, template.id, sid))
    return {"id": row_id(sid, template, seed), "instruction": prompt, "input": "", "output": target,
            "template_id": template.id, "template_name": template.name, "task": template.task,
            "language": template.language, "inverted": template.inverted, "source_id": sid, "seed": seed}


def render_rows(templates: Sequence[Template], examples: Iterable[dict], *, per_input: int = 1, seed: int = 0,
                stats: Optional[RenderStats] = None, seen: Optional[set] = None) -> Iterator[dict]:
    """Rendered, deduplicated rows: ``per_input`` templates per example (errors go to ``stats.errors``)."""
    if not templates:
        raise RenderError("no templates to render with")
    stats = stats if stats is not None else RenderStats()
    seen = seen if seen is not None else set()
    for example in examples:
        sid = source_id(example)
        for template in pick_templates(templates, sid, per_input, seed):
            try:
                row = render_example(template, example, seed)
            except TemplateError as err:
                stats.errors.append(f"source {sid}: {err}")
                continue
            if not row["instruction"] or not row["output"]:
                stats.errors.append(f"source {sid}: template {template.id} ({template.name}): empty prompt or target")
                continue
            content = (row["instruction"], row["output"])
            if content in seen:
                stats.duplicates += 1
                continue
            seen.add(content)
            yield row


def render_to_jsonl(templates: Sequence[Template], examples: Iterable[dict], path, *, per_input: int = 1,
                    seed: int = 0, progress: bool = False) -> RenderStats:
    """Render into the JSONL file ``path`` through a resumable ``JSONLStage`` (a rerun adds only what is missing)."""
    from tqdm.auto import tqdm

    from ..stage import JSONLStage

    stats = RenderStats()
    with JSONLStage(path) as stage:
        seen = {(r.get("instruction"), r.get("output")) for r in stage.rows()}
        for example in tqdm(list(examples), desc="rendering", disable=not progress):
            sid = source_id(example)
            picked = pick_templates(templates, sid, per_input, seed)
            missing = [t for t in picked if row_id(sid, t, seed) not in stage.done]
            stats.already_done += len(picked) - len(missing)
            if missing:
                rows = list(render_rows(missing, [example], per_input=len(missing), seed=seed, stats=stats, seen=seen))
                stats.written += stage.extend(rows)
    return stats


# --- inputs ---------------------------------------------------------------------------------------

def read_examples(path) -> list[dict]:
    """Examples from a JSONL file (one JSON object of template fields per line); RenderError names the line."""
    from ...data.io import iter_json_items

    out = []
    try:
        for line, obj in iter_json_items(path):
            if not isinstance(obj, dict):
                raise RenderError(f"{path}:{line}: expected a JSON object of template fields, got {type(obj).__name__}")
            out.append(obj)
    except DataError as err:
        raise RenderError(str(err)) from None
    except OSError as err:
        raise RenderError(f"{path}: cannot read: {err.strerror}") from None
    return out


def check_fields(templates: Sequence[Template], examples: Sequence[dict], path: str = "<inputs>") -> None:
    """RenderError (``file:line: field: problem``) for the first example lacking a variable some template reads."""
    needed = set().union(*(t.variables() for t in templates))
    for k, ex in enumerate(examples, start=1):
        missing = sorted(needed - set(ex))
        if missing:
            raise RenderError(f"{path}:{k}: {missing[0]}: missing (the templates read {sorted(needed)})")


__all__ = ["RenderError", "RenderStats", "check_fields", "pick_templates", "read_examples",
           "render_example", "render_rows", "render_to_jsonl", "row_id", "source_id"]
