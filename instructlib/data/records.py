"""Chapter 04: the data model — a Task (one instruction, several instances) and a flat Record (one example).

A *task* is what a person writes by hand (Self-Instruct's seed format): an instruction plus a few
input/output instances. A *record* is what a model is trained on: one (instruction, input, output)
triple, the Alpaca format. ``Task.to_records()`` flattens the first into the second.

Parsing never guesses: ``task_problems`` / ``record_problems`` list *every* schema problem of one
JSON object as (field, message) pairs, and the ``*_from_dict`` constructors raise a ``DataError``
naming file, line and field for the first one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

# Keys of the Self-Instruct seed format, then the optional keys this course adds.
SEED_KEYS = ("id", "name", "instruction", "instances", "is_classification")
COURSE_KEYS = ("category", "language", "source")
RECORD_KEYS = ("instruction", "input", "output")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a data file: where (file, line, field) and what."""

    path: str
    line: Optional[int]
    field: Optional[str]
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        where = self.path + (f":{self.line}" if self.line is not None else "")
        what = f"field '{self.field}': " if self.field else ""
        return f"{where}: {self.severity}: {what}{self.message}"


class DataError(ValueError):
    """Bad input data; ``str()`` names the file, the line and the field."""

    def __init__(self, path: str, line: Optional[int], field: Optional[str], message: str):
        self.problem = Problem(str(path), line, field, message)
        self.path, self.line, self.field = str(path), line, field
        super().__init__(str(self.problem))


@dataclass
class Instance:
    """One input/output example of a task (``input`` may be empty)."""

    input: str = ""
    output: str = ""


@dataclass
class Record:
    """One training example in the Alpaca shape: instruction, optional input, output."""

    instruction: str
    input: str = ""
    output: str = ""

    def to_dict(self) -> dict:
        """The Alpaca dict ``{"instruction", "input", "output"}``."""
        return {"instruction": self.instruction, "input": self.input, "output": self.output}


@dataclass
class Task:
    """A hand-written task: an instruction and its instances (the Self-Instruct seed format)."""

    instruction: str
    instances: list[Instance] = field(default_factory=list)
    is_classification: bool = False
    language: str = "en"
    category: str = ""
    source: str = ""
    name: str = ""
    id: str = ""

    def to_records(self) -> list[Record]:
        """One Record per instance."""
        return [Record(self.instruction, inst.input, inst.output) for inst in self.instances]

    def to_dict(self) -> dict:
        """The seed-format dict; the course keys appear only when they differ from the default."""
        d: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "instruction": self.instruction,
            "instances": [{"input": i.input, "output": i.output} for i in self.instances],
            "is_classification": self.is_classification,
        }
        for key, default in (("category", ""), ("language", "en"), ("source", "")):
            if getattr(self, key) != default:
                d[key] = getattr(self, key)
        return d


def _check_str(obj: dict, key: str, out: list, *, required: bool = True, nonempty: bool = False,
               prefix: str = "") -> None:
    name = prefix + key
    if key not in obj:
        if required:
            out.append((name, "missing"))
        return
    value = obj[key]
    if not isinstance(value, str):
        out.append((name, f"must be a string, got {type(value).__name__} {_short(value)}"))
    elif nonempty and not value.strip():
        out.append((name, "is empty"))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def task_problems(obj: Any) -> list[tuple[str, str]]:
    """Every schema problem of one seed-format object, as (field, message) pairs."""
    if not isinstance(obj, dict):
        return [("", f"expected a JSON object, got {type(obj).__name__}")]
    out: list[tuple[str, str]] = []
    _check_str(obj, "id", out, required=False)
    _check_str(obj, "name", out, required=False)
    _check_str(obj, "instruction", out, nonempty=True)
    for key in COURSE_KEYS:
        _check_str(obj, key, out, required=False)
    if "is_classification" in obj and not isinstance(obj["is_classification"], bool):
        out.append(("is_classification",
                    f"must be true or false, got {_short(obj['is_classification'])}"))
    if "instances" not in obj:
        out.append(("instances", "missing"))
    elif not isinstance(obj["instances"], list):
        out.append(("instances", f"must be a list, got {type(obj['instances']).__name__}"))
    elif not obj["instances"]:
        out.append(("instances", "is empty: a task needs at least one instance"))
    else:
        for k, inst in enumerate(obj["instances"]):
            prefix = f"instances[{k}]."
            if not isinstance(inst, dict):
                out.append((f"instances[{k}]", f"expected an object, got {type(inst).__name__}"))
                continue
            _check_str(inst, "input", out, prefix=prefix)
            _check_str(inst, "output", out, prefix=prefix)
            for key in sorted(set(inst) - {"input", "output"}):
                out.append((prefix + key, "unknown key"))
    for key in sorted(set(obj) - set(SEED_KEYS) - set(COURSE_KEYS)):
        out.append((key, "unknown key"))
    return out


def record_problems(obj: Any) -> list[tuple[str, str]]:
    """Every schema problem of one Alpaca-format object, as (field, message) pairs."""
    if not isinstance(obj, dict):
        return [("", f"expected a JSON object, got {type(obj).__name__}")]
    out: list[tuple[str, str]] = []
    _check_str(obj, "instruction", out, nonempty=True)
    _check_str(obj, "input", out, required=False)
    _check_str(obj, "output", out)
    return out  # extra keys (e.g. Alpaca's "text") are allowed and ignored


def _raise_first(problems: list[tuple[str, str]], path: str, line: Optional[int]) -> None:
    if problems:
        fld, message = problems[0]
        raise DataError(path, line, fld or None, message)


def task_from_dict(obj: Any, path: str = "<data>", line: Optional[int] = None) -> Task:
    """Parse one seed-format object; raise DataError (file, line, field) if it is malformed."""
    _raise_first(task_problems(obj), path, line)
    return Task(
        instruction=obj["instruction"],
        instances=[Instance(i["input"], i["output"]) for i in obj["instances"]],
        is_classification=obj.get("is_classification", False),
        language=obj.get("language", "en"),
        category=obj.get("category", ""),
        source=obj.get("source", ""),
        name=obj.get("name", ""),
        id=obj.get("id", ""),
    )


def record_from_dict(obj: Any, path: str = "<data>", line: Optional[int] = None) -> Record:
    """Parse one Alpaca-format object; raise DataError (file, line, field) if it is malformed."""
    _raise_first(record_problems(obj), path, line)
    return Record(obj["instruction"], obj.get("input", ""), obj["output"])
