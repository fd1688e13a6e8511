"""Exercises: grade student notebooks against the key, in sandboxed kernels, into a CSV gradebook.

For each chapter and question the key's own setup, answers and test cells run once in a trusted
kernel (values from ``check`` become the expected values; hidden inputs come from a secret drawn
for this run). Each submission's question then runs in a fresh sandboxed kernel (its setup and
answer cells, then the key's test cells); the values it sends are compared with the key's in this
process. A submission's rows are appended to the gradebook as soon as it is done, so a crash
loses at most the ones in flight and a rerun skips what is already there.
"""
from __future__ import annotations

import builtins
import csv
import io
import os
import queue
import re
import secrets
import shutil
import site
import sys
import tempfile
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..files import atomic_write_text
from . import checks as checks_module
from . import kernel
from . import sandbox as sb
from .checks import ValueFormatError, compare, decode
from .exercise import (Key, KeyTest, Question, cell_role, chapter_of, forbidden_uses, load_key, read_notebook,
                       source_of, student_test_source)

CSV_FIELDS = ("student", "chapter", "question", "points", "max_points", "feedback")
GENERIC_STEM_RE = re.compile(r"ch\d\d_exercises\b.*")  # also "ch02_exercises (1)", "ch02_exercises-copy"
GRADER_ERROR = "GRADER ERROR"  # feedback prefix of rows a rerun grades again
MAX_MESSAGE = 300  # characters of one error message kept in the feedback
MAX_FEEDBACK = 1500  # characters of one question's feedback
BUILTIN_ERRORS = frozenset(n for n, v in vars(builtins).items() if isinstance(v, type) and issubclass(v, BaseException))
# A fresh copy of the checks module, whatever the student's cells did to the imported one.
PREAMBLE = ("import importlib.util as _instructlib_iu\n"
            "_instructlib_spec = _instructlib_iu.spec_from_file_location('_instructlib_checks', {path!r})\n"
            "_instructlib_checks = _instructlib_iu.module_from_spec(_instructlib_spec)\n"
            "__import__('sys').modules['_instructlib_checks'] = _instructlib_checks\n"
            "_instructlib_spec.loader.exec_module(_instructlib_checks)\n"
            "_instructlib_checks._configure({mode!r}, {secret!r})\n"
            "check, raises, seed = _instructlib_checks.check, _instructlib_checks.raises, _instructlib_checks.seed\n")


class UsageError(ValueError):
    """The command cannot run at all (duplicate students, an unusable gradebook, no sandbox)."""


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
    setup: list[tuple[int, str]] = field(default_factory=list)  # (1-based cell number, source)
    answers: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    problem: str = ""  # why it cannot be graded at all
    notes: list[str] = field(default_factory=list)  # warnings shown with its first question


@dataclass
class ExpectedCheck:
    """One ``check`` of a key test cell: what the student's value must agree with."""

    label: str
    expected: object
    atol: float
    rtol: float
    hint: str


@dataclass
class GradeRun:
    """Everything a grading run produced."""

    rows: list[Grade]
    problems: list[str] = field(default_factory=list)  # submissions that could not be graded
    errors: list[str] = field(default_factory=list)  # grader errors (not the students' fault)
    warnings: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already in the gradebook
    sandbox: str = ""

    @property
    def exit_code(self) -> int:
        """3 for grader errors, 1 if some submission could not be graded, else 0."""
        return 3 if self.errors else 1 if self.problems else 0


# ---------------------------------------------------------------- submissions


def student_name(path: str | Path) -> str:
    """The file's stem, or its folder's name when the stem is a generic ``chNN_exercises...``."""
    path = Path(os.path.abspath(path))
    name = path.parent.name if GENERIC_STEM_RE.fullmatch(path.stem) else path.stem
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    return name[:100] or "unnamed"


def load_submission(path: str | Path, chapter: str | None = None) -> Submission:
    """Read a submission; anything wrong with the file becomes ``problem``, never an exception."""
    sub = Submission(Path(path), student_name(path), chapter)
    try:
        nb = read_notebook(path)
        own = chapter_of(nb)
        if own and chapter and own != chapter:
            sub.notes.append(f"note: --chapter {chapter} was given but the notebook says chapter {own}; "
                             f"graded as chapter {own}")
        sub.chapter = own or chapter
        if sub.chapter is None:
            sub.problem = (f'{path}: notebook metadata has no {{"instructlib": {{"chapter": "NN"}}}} '
                           "(restore it, or grade with --chapter NN)")
            return sub
        for i, cell in enumerate(nb["cells"], start=1):
            role, q = cell_role(cell)
            if role == "setup":
                sub.setup.append((i, source_of(cell)))
            elif role == "answer":
                sub.answers.setdefault(q, []).append((i, source_of(cell)))
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError, MemoryError, OSError) as err:
        sub.problem = f"{path}: cannot read the notebook: {_clip(str(err), 500)}"
    return sub


def _clip(text: str, limit: int = MAX_MESSAGE) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _num(x: float) -> str:
    return f"{x:g}"


# ---------------------------------------------------------------- the key


class KeyProblem(RuntimeError):
    """The key cannot be used for a question (it fails its own checks, or its kernel failed)."""


def _tests_in_order(question: Question) -> list[KeyTest]:
    """Visible tests first, so no student code runs after a hidden test before its feedback is fixed."""
    return sorted(question.tests, key=lambda t: (t.visibility != "visible", t.index))


def run_key(key: Key, question: Question, *, secret: str, timeout: float, max_output: int,
            base_dir: str) -> list[list[ExpectedCheck]]:
    """Run the key for one question in a trusted kernel; the expected checks of each test cell."""
    tests = _tests_in_order(question)
    lead = [(f"cell {i}", s) for i, s in key.setup + key.answers[question.name]]
    preamble = PREAMBLE.format(path=checks_module.__file__, mode="key", secret=secret)
    cells = [s for _, s in lead] + [preamble] + [t.source for t in tests]
    runs = kernel.run_cells(cells, timeout=timeout, max_output=max_output, sandbox=None, base_dir=base_dir)
    where = f"{key.path} question {question.name}"
    for (label, _), run in zip(lead + [("the grader's preamble", "")], runs):
        if run.status != kernel.OK:
            raise KeyProblem(f"{where}: {label} of the key: {run.status} {_clip(run.error)}")
    expected = []
    for test, run in zip(tests, runs[len(lead) + 1:]):
        cell = f"{where}: cell {test.index}"
        if run.status != kernel.OK:
            raise KeyProblem(f"{cell}: the key's test cell: {run.status} {_clip(run.error)}")
        if not run.checks:
            raise KeyProblem(f"{cell}: the test cell made no check(label, got, expected) call")
        checks = []
        for payload in run.checks:
            got, exp = decode(payload.get("got")), decode(payload["expected"])
            if "error" in payload:
                raise KeyProblem(f"{cell}: check {payload['label']!r}: {payload['error']}")
            if problem := compare(got, exp, atol=payload["atol"], rtol=payload["rtol"]):
                raise KeyProblem(f"{cell}: the key fails its own check {payload['label']!r}: {problem.detail}")
            checks.append(ExpectedCheck(payload["label"], exp, payload["atol"], payload["rtol"], payload["hint"]))
        expected.append(checks)
    return expected


# ---------------------------------------------------------------- one submission's question


def _events(timeout: float, max_output: int) -> dict[str, str]:
    return {kernel.TIMEOUT: f"time limit of {timeout:g} s exceeded",
            kernel.DIED: "the kernel died (os._exit, a crash or the memory limit)",
            kernel.FLOOD: f"output limit of {max_output} bytes exceeded",
            kernel.PROTOCOL: "the kernel sent a malformed message"}


def score_test(test: KeyTest, expected: list[ExpectedCheck], run: kernel.CellRun, events: dict) -> str:
    """"" if the student's run of ``test`` passes every expected check, else why (safe to show)."""
    hidden = test.visibility == "hidden"
    if run.status == kernel.ERROR:
        if hidden:  # the message is the student's text, and could carry the hidden test's
            return f"raised {run.ename if run.ename in BUILTIN_ERRORS else 'an exception'}"
        return f"raised {_clip(run.error)}"
    if run.status in events:
        return events[run.status]
    if run.status != kernel.OK:
        return "not run"
    sent: dict[str, list] = {}
    for payload in run.checks:
        if isinstance(payload, dict) and isinstance(payload.get("label"), str):
            sent.setdefault(payload["label"], []).append(payload)
    seen: Counter = Counter()
    failures = []
    for exp in expected:
        n, seen[exp.label] = seen[exp.label], seen[exp.label] + 1
        label = f"check {_clip(exp.label, 100)!r}"
        mine = sent.get(exp.label, [])
        if n >= len(mine):
            failures.append(f"{label} was not reached")
            continue
        payload = mine[n]
        if "error" in payload or "got" not in payload:
            failures.append(f"{label}: " + ("the value is not plain data" if hidden else
                                            _clip(str(payload.get("error", "no value")))))
            continue
        try:
            problem = compare(decode(payload["got"]), exp.expected, atol=exp.atol, rtol=exp.rtol)
        except (ValueFormatError, RecursionError, TypeError, ValueError) as err:
            failures.append(f"{label}: malformed value" + ("" if hidden else f" ({_clip(str(err))})"))
            continue
        if problem:
            text = f"wrong {problem.kind}" if hidden else _clip(problem.detail)
            failures.append(f"{label}: {text}" + (f". {_clip(exp.hint, 200)}" if exp.hint else ""))
    if not failures:
        return ""
    more = f" (and {len(failures) - 1} more failing checks)" if len(failures) > 1 else ""
    return failures[0] + more


def grade_question(sub: Submission, question: Question, expected: list[list[ExpectedCheck]], *, secret: str,
                   timeout: float, max_output: int, sandbox: kernel.Sandbox, uids: queue.Queue,
                   base_dir: str) -> Grade:
    """Run setup + answers + the key's tests for one question in a fresh sandboxed kernel and score it."""
    answers = sub.answers.get(question.name, [])
    notes = [] if answers else [f"no '# EXERCISE {question.name}' answer cell found"]
    labelled = ([(f"setup cell {i}", src) for i, src in sub.setup]
                + [(f"answer cell {i}", src) for i, src in answers])
    if hits := forbidden_uses(labelled, question.forbidden):
        name = hits[0].split(" ", 1)[0]
        also = f" (also: {', '.join(hits[1:4])}{', ...' if len(hits) > 4 else ''})" if len(hits) > 1 else ""
        return Grade(sub.student, sub.chapter or "", question.name, 0.0, question.points,
                     [f"0 points: your code uses `{name}` ({hits[0].split(' ', 1)[1].strip('()')}), "
                      f"which question {question.name} forbids: the question asks you to build what `{name}` "
                      "does yourself, so calling or importing it (even in a setup cell) gives 0; remove every "
                      f"use and resubmit{also}"])
    tests = _tests_in_order(question)
    preamble = PREAMBLE.format(path=checks_module.__file__, mode="student", secret=secret)
    cells = [src for _, src in labelled] + [preamble] + [student_test_source(t.source) for t in tests]
    uid = uids.get()
    try:
        runs = kernel.run_cells(cells, timeout=timeout, max_output=max_output, sandbox=sandbox, uid=uid,
                                base_dir=base_dir)
    finally:
        uids.put(uid)
    events = _events(timeout, max_output)
    for (label, _), run in zip(labelled, runs):
        if run.status == kernel.ERROR:
            notes.append(f"{label} raised {_clip(run.error)}")
        elif run.status in events:
            notes.append(f"{events[run.status]} in {label}")
    points = 0.0
    for test, exp, run in zip(tests, expected, runs[len(labelled) + 1:]):
        if why := score_test(test, exp, run, events):
            notes.append(f"{test.label} failed ({_num(test.points)} pts): {why}")
        else:
            points += test.points
    if points == question.points and not notes:
        notes.append("all tests passed")
    notes = [_clip("; ".join(notes), MAX_FEEDBACK)]
    return Grade(sub.student, sub.chapter or "", question.name, points, question.points, notes)


# ---------------------------------------------------------------- gradebook


def csv_safe(text: str) -> str:
    """One line, and never a spreadsheet formula (a leading = + - @ gets a quote)."""
    text = " ".join(str(text).split())
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def _csv_lines(rows: list[Grade]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for r in rows:
        writer.writerow([csv_safe(r.student), r.chapter, csv_safe(r.question), _num(r.points), _num(r.max_points),
                         csv_safe(r.feedback)])
    return buf.getvalue()


class Gradebook:
    """The CSV gradebook, appended one submission at a time (flush + fsync); resumable."""

    def __init__(self, path: str | Path | None, questions_of: Callable[[str], list[str] | None]):
        self.path, self.lock = (Path(path) if path else None), threading.Lock()
        self.done: dict[tuple[str, str], list[dict]] = {}
        if self.path is None:
            return
        if self.path.exists():
            self._resume(questions_of)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, [",".join(CSV_FIELDS) + "\n"])

    def _resume(self, questions_of) -> None:
        text = self.path.read_text(encoding="utf-8")
        text = text[: text.rfind("\n") + 1]  # a torn last line from a crash
        rows = list(csv.DictReader(io.StringIO(text)))
        if not text or tuple(csv.DictReader(io.StringIO(text)).fieldnames or ()) != CSV_FIELDS:
            raise UsageError(f"{self.path}: not a gradebook of `instructlib grade` (columns "
                             f"{', '.join(CSV_FIELDS)}); choose another --out")
        blocks: dict[tuple[str, str], list[dict]] = {}
        for r in rows:
            blocks.setdefault((r["student"], r["chapter"]), []).append(r)
        for (student, chapter), block in blocks.items():
            names = [r["question"] for r in block]
            expected = questions_of(chapter)
            complete = names == [""] or expected is None or sorted(names) == sorted(expected)
            if complete and not any(r["feedback"].startswith(GRADER_ERROR) for r in block):
                self.done[student, chapter] = block
        kept = [r for b in self.done.values() for r in b]
        if len(kept) != len(rows) or not self.path.read_text(encoding="utf-8").endswith("\n"):
            buf = io.StringIO()
            csv.DictWriter(buf, CSV_FIELDS, lineterminator="\n").writeheader()
            csv.DictWriter(buf, CSV_FIELDS, lineterminator="\n").writerows(kept)
            atomic_write_text(self.path, [buf.getvalue()])

    def is_done(self, sub: Submission) -> bool:
        """Whether the gradebook already holds this student's rows for this chapter."""
        return (csv_safe(sub.student), sub.chapter or "") in self.done

    def append(self, rows: list[Grade]) -> None:
        """Append one submission's rows in a single write, then flush and fsync."""
        if self.path is None:
            return
        with self.lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(_csv_lines(rows))
            f.flush()
            os.fsync(f.fileno())


def write_gradebook(rows: list[Grade], out: str | Path) -> None:
    """Write a complete CSV gradebook (one row per student and question), atomically."""
    atomic_write_text(out, [",".join(CSV_FIELDS) + "\n" + _csv_lines(rows)])


def feedback_file_name(student: str) -> str:
    """A safe file name for a student's feedback (no path separators, no leading dot)."""
    return re.sub(r"[^\w@+.-]", "_", student).lstrip(".")[:100] or "unnamed"


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
        path = Path(feedback_dir) / f"{feedback_file_name(student)}.md"
        atomic_write_text(path, ["\n".join(lines)])
        written.append(path)
    return written


# ---------------------------------------------------------------- the run


def _key_for(chapter: str, key_dir: Path, cache: dict) -> Key | str:
    """The parsed key of a chapter, or why it cannot be used (cached per chapter)."""
    if chapter not in cache:
        path = key_dir / f"ch{chapter}_exercises.ipynb"
        try:
            cache[chapter] = load_key(path) if path.exists() else f"no key {path} for chapter {chapter}"
        except ValueError as err:
            cache[chapter] = f"key unusable: {err}"
    return cache[chapter]


def _check_unique(subs: list[Submission]) -> None:
    seen: dict[tuple, Path] = {}
    for sub in subs:
        if (sub.student, sub.chapter) in seen:
            raise UsageError(f"two submissions of student {sub.student!r} for chapter {sub.chapter}: "
                             f"{seen[sub.student, sub.chapter]} and {sub.path} (rename one; the name "
                             "comes from the file, or its folder for chNN_exercises.ipynb)")
        seen[sub.student, sub.chapter] = sub.path


def _needed_paths() -> list[str]:
    """What every kernel must read: the interpreter, packages, the course library and cache."""
    from ..config import cache_dir

    paths = [sys.base_prefix, sys.prefix, *site.getsitepackages(), str(Path(__file__).resolve().parents[1]),
             str(cache_dir()), *os.environ.get("PYTHONPATH", "").split(os.pathsep)]
    return sorted({os.path.realpath(p) for p in paths if p and os.path.exists(p)})


def _hidden_paths(key_dir: Path, subs: list[Submission], extra: list[Path], needed: list[str]) -> list[str]:
    """Folders (or, where a folder holds something needed, files) a student kernel must not see."""
    def inside(child: str, parent: str) -> bool:
        return child == parent or child.startswith(parent.rstrip("/") + "/")

    files = [*key_dir.glob("*.ipynb"), *(s.path for s in subs), *extra]
    candidates = [str(key_dir), *(str(s.path.parent) for s in subs), *(str(p.parent) for p in extra)]
    hide: set[str] = set()
    for c in {os.path.realpath(c) for c in candidates}:
        if any(inside(n, c) for n in needed) or c == "/":
            continue
        hide.add(c)
    hide |= {os.path.realpath(f) for f in files
             if os.path.exists(f) and not any(inside(os.path.realpath(f), h) for h in hide)}
    return sorted(h for h in hide if not any(inside(h, o) and h != o for o in hide))


def open_to_others(folder: str) -> None:
    """Make the course cache readable (not writable) by the sandbox uids: it holds public artefacts."""
    for root, dirs, files in os.walk(folder):
        for path, bits in [(root, 0o005)] + [(os.path.join(root, f), 0o004) for f in files]:
            try:
                mode = os.lstat(path).st_mode
                if not os.path.islink(path) and mode & bits != bits:
                    os.chmod(path, mode | bits)
            except OSError:
                continue


_WORKING: dict[str, sb.Level] = {}


def choose_sandbox(isolation: str, limits: sb.Limits, hide: list[str], needed: list[str], base: str,
                   log: Callable[[str], None]) -> kernel.Sandbox:
    """The strongest isolation that starts a working kernel here (``require``: the full one or an error)."""
    from ..config import cache_dir

    if isolation == "none":
        return kernel.Sandbox(sb.Level(False, False, "--isolation none"), hide, limits, str(cache_dir()), needed)
    if isolation in _WORKING:  # probed once per process
        return kernel.Sandbox(_WORKING[isolation], hide, limits, str(cache_dir()), needed)
    level = sb.detect()
    if isolation == "require" and not (level.uid and level.namespaces):
        raise UsageError(f"--isolation require: no uid and namespaces here ({level.reason})")
    tried = []
    candidates = [level] + ([sb.Level(True, False, "namespaces failed")] if level.namespaces else [])
    if isolation != "require":
        candidates.append(sb.Level(False, False, level.reason or "no uid sandbox worked"))
    for lvl in candidates:
        box = kernel.Sandbox(lvl, hide, limits, str(cache_dir()), needed)
        pool = sb.UidPool(1) if lvl.uid else None
        try:
            uid = pool.free[0] if pool else None
            probe = "import instructlib.grading.checks, os\nos.listdir(os.environ['INSTRUCTLIB_CACHE'])"
            runs = kernel._run_once([probe], 60, 100_000, box, uid, 60, base)
            if runs[0].status == kernel.OK:
                if tried:
                    lvl.reason = (lvl.reason + "; " if lvl.reason else "") + "; ".join(tried)
                _WORKING[isolation] = lvl
                return box
            tried.append(f"{'uid' if lvl.uid else 'plain'} kernel failed: {runs[0].error or runs[0].status}")
        except (kernel.KernelStartError, RuntimeError, OSError) as err:
            tried.append(f"{'uid+namespaces' if lvl.namespaces else 'uid' if lvl.uid else 'plain'} "
                         f"kernel failed: {_clip(str(err), 200)}")
        finally:
            if pool:
                pool.close()
        if isolation == "require":
            break
    raise UsageError("no working sandbox: " + "; ".join(tried))


def grade(paths: list[str | Path], *, key_dir: str | Path = "solutions", timeout: float = 60,
          max_output: int = 1_000_000, chapter: str | None = None, jobs: int = 1, out: str | Path | None = None,
          feedback_dir: str | Path | None = None, limits: sb.Limits | None = None, isolation: str = "auto",
          log: Callable[[str], None] = lambda line: None,
          progress: Callable[[list[Grade]], None] | None = None) -> GradeRun:
    """Grade submissions (appending each to ``out`` as it finishes); rows in submission order."""
    key_dir, limits, jobs = Path(key_dir), limits or sb.Limits(), max(1, jobs)
    subs = [load_submission(p, chapter) for p in paths]
    _check_unique([s for s in subs if not s.problem])
    keys: dict[str, Key | str] = {}
    book = Gradebook(out, lambda ch: list(k.questions) if isinstance(k := _key_for(ch, key_dir, keys), Key) else None)
    result = GradeRun(rows=[])
    counts = Counter(s.chapter for s in subs if s.chapter)
    batch = counts.most_common(1)[0][0] if counts else None
    for s in subs:
        if s.chapter and batch and s.chapter != batch:
            s.notes.append(f"note: this notebook is chapter {s.chapter}, most of the batch is chapter {batch}")
            result.warnings.append(f"{s.path}: chapter {s.chapter} differs from the batch's chapter {batch} "
                                   f"(graded against ch{s.chapter}_exercises.ipynb)")
    todo = []
    for s in subs:
        if book.is_done(s):
            result.skipped.append(s.student)
            continue
        key = _key_for(s.chapter, key_dir, keys) if s.chapter else None
        if isinstance(key, str) and not s.problem:
            if key.startswith("key unusable"):
                result.errors.append(f"{s.student}: {key}")
                s.problem = f"{GRADER_ERROR} (not your fault; ask the instructor): {key}"
            else:
                s.problem = key
        todo.append((s, key))
    order = {id(s): i for i, s in enumerate(subs)}
    finished: dict[int, list[Grade]] = {}
    finish_lock = threading.Lock()

    def finish(sub: Submission, rows: list[Grade]) -> None:
        if sub.notes and rows:
            rows[0].notes = sub.notes + rows[0].notes
        with finish_lock:
            finished[order[id(sub)]] = rows
        book.append(rows)
        if feedback_dir:
            write_feedback(rows, feedback_dir)
        if progress:
            progress(rows)

    gradable = []
    for s, key in todo:
        if s.problem:
            if not s.problem.startswith(GRADER_ERROR):
                result.problems.append(f"{s.student}: {s.problem}")
            questions = list(key.questions.values()) if isinstance(key, Key) else []
            note = [_clip(s.problem, 1000)]
            finish(s, [Grade(s.student, s.chapter or "", q.name, 0.0, q.points, note) for q in questions]
                   or [Grade(s.student, s.chapter or "", "", 0.0, 0.0, note)])
        else:
            gradable.append((s, key))
    if gradable:
        _run_gradable(gradable, result, finish, key_dir=key_dir, subs=subs, out=out, feedback_dir=feedback_dir,
                      timeout=timeout, max_output=max_output, jobs=jobs, limits=limits, isolation=isolation, log=log)
    result.rows = [r for i in sorted(finished) for r in finished[i]]
    return result


def _run_gradable(gradable, result: GradeRun, finish, *, key_dir, subs, out, feedback_dir, timeout, max_output,
                  jobs, limits, isolation, log) -> None:
    """Run the keys, then every (submission, question) in ``jobs`` parallel sandboxed kernels."""
    secret = secrets.token_hex(16)
    base = tempfile.mkdtemp(prefix="instructlib-grade-")
    os.chmod(base, 0o711)  # sandbox uids may enter their own kernel folder, not list the others
    pool = None
    try:
        needed = _needed_paths()
        extra = [Path(p) for p in (out, feedback_dir) if p]
        hide = _hidden_paths(key_dir, subs, extra, needed)
        box = choose_sandbox(isolation, limits, hide, needed, base, log)
        result.sandbox = box.level.describe()
        log(result.sandbox)
        pool = sb.UidPool(jobs) if box.level.uid else None
        if pool and not box.level.namespaces and (readable := sb.readable_by(pool.free[0], hide)):
            result.warnings.append("the sandbox user can read " + ", ".join(readable[:5]) +
                                   " (no private mount namespace here): make those folders private "
                                   "(chmod 700) before grading untrusted submissions")
        uids: queue.Queue = queue.Queue()
        for uid in (pool.free if pool else [None] * jobs):
            uids.put(uid)
        key_work = {(key.chapter, q.name): (key, q) for _, key in gradable for q in key.questions.values()}
        expected: dict[tuple[str, str], list | str] = {}

        def key_one(item):
            key, q = key_work[item]
            try:
                expected[item] = run_key(key, q, secret=secret, timeout=max(timeout, 60) * 2,
                                         max_output=max(max_output, 10_000_000), base_dir=base)
            except Exception as err:  # noqa: BLE001 - a broken key costs its question, not the run
                expected[item] = f"{GRADER_ERROR} (not your fault; ask the instructor): {_clip(str(err), 500)}"
                result.errors.append(f"key for chapter {item[0]} {item[1]}: {_clip(str(err), 500)}")

        with ThreadPoolExecutor(max_workers=jobs) as ex:
            list(ex.map(key_one, key_work))
        if box.level.uid:
            open_to_others(box.cache)  # what the key runs just built, too
        remaining = {id(s): len(key.questions) for s, key in gradable}
        rows_of: dict[int, dict[str, Grade]] = {id(s): {} for s, _ in gradable}
        lock = threading.Lock()

        def one(item) -> None:
            sub, key, q = item
            exp = expected[key.chapter, q.name]
            if isinstance(exp, str):
                row = Grade(sub.student, sub.chapter, q.name, 0.0, q.points, [exp])
            else:
                try:
                    row = grade_question(sub, q, exp, secret=secret, timeout=timeout, max_output=max_output,
                                         sandbox=box, uids=uids, base_dir=base)
                except Exception as err:  # noqa: BLE001 - a grader failure costs this question, not the run
                    result.errors.append(f"{sub.student} {q.name}: {type(err).__name__}: {_clip(str(err), 500)}")
                    row = Grade(sub.student, sub.chapter, q.name, 0.0, q.points,
                                [f"{GRADER_ERROR} (not your fault; ask the instructor): {_clip(str(err))}"])
            with lock:
                rows_of[id(sub)][q.name] = row
                remaining[id(sub)] -= 1
                done = remaining[id(sub)] == 0
            if done:
                finish(sub, [rows_of[id(sub)][name] for name in key.questions])

        work = [(s, key, q) for s, key in gradable for q in key.questions.values()]
        with ThreadPoolExecutor(max_workers=jobs) as ex:
            list(ex.map(one, work))
    finally:
        if pool:
            pool.close()
        shutil.rmtree(base, ignore_errors=True)
