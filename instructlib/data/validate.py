"""Chapter 04: validate a data file and report *every* problem (file, line, field), not just the first.

Used by ``instructlib validate FILE``. The file kind (seed tasks, Alpaca records, chat messages) is
taken from its first object; every later object must be of the same kind.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .formats import messages_problems
from .io import ARRAY_IN_JSONL_HINT, PathLike, detect_kind, is_json_array, iter_json_items, parse_json_line
from .records import DataError, Problem, record_problems, task_problems

CHECKS = {"task": task_problems, "record": record_problems,
          "messages": lambda obj: messages_problems(obj.get("messages"))}
KIND_NAMES = {"task": "Self-Instruct seed tasks", "record": "Alpaca records",
              "messages": "chat messages"}


@dataclass
class Report:
    """The outcome of validating one file."""

    path: str
    kind: str = ""
    n_items: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no problem of severity ``error`` was found."""
        return not any(p.severity == "error" for p in self.problems)

    def summary(self) -> str:
        """One line: the verdict, the kind and the counts."""
        kind = KIND_NAMES.get(self.kind, "unknown format")
        if self.ok:
            return f"{self.path}: OK ({self.n_items} items, {kind})"
        return f"{self.path}: {len(self.problems)} problem(s) in {self.n_items} items ({kind})"


def _decode(path: str, data: bytes, report: Report) -> tuple[str, set[int]]:
    """UTF-8 text and the numbers of the lines that are not valid UTF-8 (each one reported)."""
    try:
        return data.decode("utf-8-sig"), set()
    except UnicodeDecodeError:
        pass
    bad = set()
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as err:
            bad.add(number)
            report.problems.append(Problem(path, number, None, f"not valid UTF-8 (byte 0x{raw[err.start]:02x} "
                                           f"at column {err.start + 1}); re-save the file as UTF-8"))
    return data.decode("utf-8-sig", errors="replace"), bad


def _objects(path: str, text: str, report: Report, skip: set[int]):
    """(line, object) pairs; JSONL syntax errors are reported and skipped, array errors stop."""
    if not text.strip():
        report.problems.append(Problem(path, None, None, "file is empty"))
        return
    if text.lstrip()[0] == "[" and Path(path).suffix != ".jsonl":
        try:
            yield from iter_json_items(path, text)
        except DataError as err:
            report.problems.append(err.problem)
        return
    array_in_jsonl = is_json_array(text)
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip() or number in skip:
            continue
        try:
            obj = parse_json_line(path, line, number)
        except DataError as err:
            hint = f"; {ARRAY_IN_JSONL_HINT}" if array_in_jsonl else ""
            report.problems.append(Problem(path, number, None, err.problem.message + hint))
            if array_in_jsonl:
                return  # the rest of a pretty-printed array would be one error per line
            continue
        if text.lstrip()[0] == "[" and isinstance(obj, list) and obj and all(isinstance(x, dict) for x in obj):
            report.problems.append(Problem(path, number, None, ARRAY_IN_JSONL_HINT))
            continue
        yield number, obj


def validate_file(path: PathLike) -> Report:
    """Check a seed-task, Alpaca or chat file; the report lists every problem found."""
    path = str(path)
    report = Report(path)
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        report.problems.append(Problem(path, None, None, f"cannot read: {err.strerror}"))
        return report
    text, bad_lines = _decode(path, data, report)
    ids: Counter = Counter()
    first_line: dict[str, int] = {}
    for line, obj in _objects(path, text, report, bad_lines):
        report.n_items += 1
        if not isinstance(obj, dict):
            report.problems.append(Problem(path, line, None, f"expected a JSON object, got {type(obj).__name__}"))
            continue
        kind = detect_kind(obj)
        report.kind = report.kind or kind
        if kind != report.kind:
            report.problems.append(Problem(path, line, None, f"looks like {KIND_NAMES[kind]} but the file "
                                           f"started as {KIND_NAMES[report.kind]}"))
            continue
        for fld, message in CHECKS[kind](obj):
            report.problems.append(Problem(path, line, fld or None, message))
        if kind == "task" and isinstance(obj.get("id"), str) and obj["id"]:
            ids[obj["id"]] += 1
            if ids[obj["id"]] > 1:
                report.problems.append(Problem(path, line, "id", f"duplicate id {obj['id']!r} "
                                               f"(first on line {first_line[obj['id']]})"))
            else:
                first_line[obj["id"]] = line
    report.problems.sort(key=lambda p: p.line or 0)
    return report
