"""Grade student notebooks against the key in ``solutions/``: one fresh kernel per question.

For each question the kernel runs the submission's shared setup cells, its answer cells for that
question, then the key's test cells for it (visible and hidden; the submission's own tests are
ignored). Each test cell that runs without error earns its points. Whatever a submission does, it
only costs that student's points: the run always finishes and writes one CSV row per
(student, question).
"""
from __future__ import annotations

import csv
import io
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..data.io import atomic_write_text
from . import kernel
from .exercise import Key, Question, cell_role, chapter_of, load_key, read_notebook, source_of

CSV_FIELDS = ("student", "chapter", "question", "points", "max_points", "feedback")
GENERIC_STEM_RE = re.compile(r"ch\d\d_exercises")
MAX_MESSAGE = 300  # characters of one exception message kept in the feedback


@dataclass
class Grade:
    """One gradebook row."""

    student: str
    chapter: str
    question: str
    points: float
    max_points: float
    notes: list[str]

    @property
    def feedback(self) -> str:
        """The notes as one CSV field."""
        return "; ".join(self.notes)


@dataclass
class Submission:
    """A student's notebook split into what the grader runs."""

    path: Path
    student: str
    chapter: str | None = None
    setup: list[tuple[int, str]] | None = None  # (1-based cell number, source)
    answers: dict[str, list[tuple[int, str]]] | None = None
    problem: str = ""  # why it cannot be graded at all


def student_name(path: str | Path) -> str:
    """The file's stem, or its directory's name when the stem is the generic ``chNN_exercises``."""
    path = Path(path).resolve()
    return path.parent.name if GENERIC_STEM_RE.fullmatch(path.stem) else path.stem


def load_submission(path: str | Path, chapter: str | None = None) -> Submission:
    """Read a submission; unreadable files and missing metadata become ``problem``, not errors."""
    sub = Submission(Path(path), student_name(path))
    try:
        nb = read_notebook(path)
    except ValueError as err:
        sub.chapter, sub.problem = chapter, f"cannot read the notebook: {err}"
        return sub
    sub.chapter = chapter_of(nb) or chapter
    if sub.chapter is None:
        sub.problem = (f'{path}: notebook metadata has no {{"instructlib": {{"chapter": "NN"}}}} '
                       "(restore it, or grade with --chapter NN)")
        return sub
    sub.setup, sub.answers = [], {}
    for i, cell in enumerate(nb["cells"], start=1):
        role, q = cell_role(cell)
        if role == "setup":
            sub.setup.append((i, source_of(cell)))
        elif role == "answer":
            sub.answers.setdefault(q, []).append((i, source_of(cell)))
    return sub


def _clip(text: str, limit: int = MAX_MESSAGE) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _num(x: float) -> str:
    return f"{x:g}"


def grade_question(sub: Submission, question: Question, *, timeout: float, max_output: int) -> Grade:
    """Run setup + answers + the key's tests for one question in a fresh kernel and score it."""
    answers = sub.answers.get(question.name, [])
    labelled = ([(f"setup cell {i}", src) for i, src in sub.setup]
                + [(f"answer cell {i}", src) for i, src in answers])
    runs = kernel.run_cells([src for _, src in labelled] + [t.source for t in question.tests],
                            timeout=timeout, max_output=max_output)
    notes = [] if answers else [f"no '# EXERCISE {question.name}' answer cell found"]
    events = {kernel.TIMEOUT: f"time limit of {timeout:g} s exceeded",
              kernel.DIED: "the kernel died (os._exit, a crash or out of memory)",
              kernel.FLOOD: f"output limit of {max_output} bytes exceeded",
              kernel.STARTUP: "the kernel did not start"}
    for (label, _), run in zip(labelled, runs):
        if run.status == kernel.ERROR:
            notes.append(f"{label} raised {_clip(run.error)}")
        elif run.status in events:
            notes.append(f"{events[run.status]} in {label}")
    points = 0.0
    for test, run in zip(question.tests, runs[len(labelled):]):
        if run.status == kernel.OK:
            points += test.points
        elif run.status == kernel.ERROR:
            notes.append(f"{test.label} failed ({_num(test.points)} pts): {_clip(run.error)}")
        elif run.status in events:
            notes.append(f"{events[run.status]} in {test.label} ({_num(test.points)} pts)")
        else:
            notes.append(f"{test.label} not run ({_num(test.points)} pts)")
    if points == question.points and not notes:
        notes.append("all tests passed")
    return Grade(sub.student, sub.chapter or "", question.name, points, question.points, notes)


def _key_for(chapter: str, key_dir: Path, cache: dict) -> Key | str:
    """The parsed key of a chapter, or the reason it cannot be used (cached per chapter)."""
    if chapter not in cache:
        path = key_dir / f"ch{chapter}_exercises.ipynb"
        try:
            cache[chapter] = load_key(path) if path.exists() else f"no key {path} for chapter {chapter}"
        except ValueError as err:
            cache[chapter] = f"key unusable: {err}"
    return cache[chapter]


def _ungradable(sub: Submission, key: Key | str | None) -> list[Grade]:
    """0-point rows carrying the reason: one per key question when the key is known, else one."""
    questions = list(key.questions.values()) if isinstance(key, Key) else []
    note = [_clip(sub.problem, 1000)]
    return ([Grade(sub.student, sub.chapter or "", q.name, 0.0, q.points, note) for q in questions]
            or [Grade(sub.student, sub.chapter or "", "", 0.0, 0.0, note)])


def _check_unique(subs: list[Submission]) -> None:
    seen: dict[tuple, Path] = {}
    for sub in subs:
        if (sub.student, sub.chapter) in seen:
            raise ValueError(f"two submissions of student {sub.student!r} for chapter {sub.chapter}: "
                             f"{seen[sub.student, sub.chapter]} and {sub.path} (rename one; the name "
                             "comes from the file, or its folder for chNN_exercises.ipynb)")
        seen[sub.student, sub.chapter] = sub.path


def grade(paths: list[str | Path], *, key_dir: str | Path = "solutions", timeout: float = 60,
          max_output: int = 1_000_000, chapter: str | None = None, jobs: int = 1,
          progress: Callable[[Grade], None] | None = None) -> tuple[list[Grade], list[str]]:
    """Grade submissions; return the rows (submission, then key question order) and the problems."""
    subs = [load_submission(p, chapter) for p in paths]
    _check_unique(subs)
    keys: dict[str, Key | str] = {}
    rows: dict[tuple[int, int], Grade] = {}
    problems: list[str] = []
    work = []
    for s, sub in enumerate(subs):
        key = _key_for(sub.chapter, Path(key_dir), keys) if sub.chapter else None
        if isinstance(key, str) and not sub.problem:
            sub.problem = key
        if sub.problem:
            problems.append(f"{sub.student}: {sub.problem}")
            rows.update(((s, i), row) for i, row in enumerate(_ungradable(sub, key)))
        else:
            work += [((s, i), sub, q) for i, q in enumerate(key.questions.values())]

    def one(item) -> tuple[tuple[int, int], Grade]:
        slot, sub, q = item
        try:
            row = grade_question(sub, q, timeout=timeout, max_output=max_output)
        except Exception as err:  # noqa: BLE001 - a grader failure costs this question, not the run
            problems.append(f"{sub.student} {q.name}: grader error {type(err).__name__}: {err}")
            row = Grade(sub.student, sub.chapter, q.name, 0.0, q.points,
                        [f"grader error (not your fault; ask the instructor): {_clip(str(err))}"])
        if progress:
            progress(row)
        return slot, row

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        rows.update(pool.map(one, work))
    return [rows[k] for k in sorted(rows)], problems


def write_gradebook(rows: list[Grade], out: str | Path) -> None:
    """Write the CSV gradebook (one row per student and question), atomically."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for r in rows:
        writer.writerow([r.student, r.chapter, r.question, _num(r.points), _num(r.max_points), r.feedback])
    atomic_write_text(out, [buf.getvalue()])


def write_feedback(rows: list[Grade], feedback_dir: str | Path) -> list[Path]:
    """Write ``feedback_dir/<student>.md`` with each question's score and notes; return the paths."""
    by_student: dict[str, list[Grade]] = {}
    for r in rows:
        by_student.setdefault(r.student, []).append(r)
    written = []
    for student, grades in by_student.items():
        total = sum(g.points for g in grades)
        possible = sum(g.max_points for g in grades)
        lines = [f"# Feedback for {student}, chapter {grades[0].chapter or '?'}", "",
                 f"Total: {_num(total)} / {_num(possible)}", ""]
        for g in grades:
            lines.append(f"## {g.question or 'submission'}: {_num(g.points)} / {_num(g.max_points)}")
            lines += [f"- {note}" for note in g.notes] + [""]
        path = Path(feedback_dir) / f"{student}.md"
        atomic_write_text(path, ["\n".join(lines)])
        written.append(path)
    return written
