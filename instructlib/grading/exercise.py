"""Exercises: the single-source exercise format (CONTRIBUTING.md, "Exercise notebooks"): parsing and checks.

A solutions notebook holds, per question ``qK``: a markdown header ``## Question qK (P points)``,
answer cells whose first line is ``# EXERCISE qK`` (solution between ``### BEGIN SOLUTION`` and
``### END SOLUTION``), and test cells ``# TEST qK visible|hidden (points: N)``. Every other code
cell is shared setup. Notebooks are handled as plain JSON dicts so that nothing (e.g. nbformat
adding random cell ids) makes the generated files differ between runs.
"""
from __future__ import annotations

import ast
import json
from collections import Counter
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
ANSWER_RE = re.compile(r"#\s*EXERCISE\s+(q\w+)\s*$")
TEST_RE = re.compile(r"#\s*TEST\s+(q\w+)\s+(visible|hidden)\s+\(points:\s*([^)]*)\)\s*$")
TEST_PREFIX_RE = re.compile(r"#\s*TEST\b")
MARKER_RE = re.compile(r"#+\s*(BEGIN|END)\s+SOLUTION\b", re.IGNORECASE)
HEADER_RE = re.compile(r"^#{1,6}\s*Question\s+(q\w+)\b(.*)$", re.MULTILINE)
HEADER_POINTS_RE = re.compile(r"\s*\(\s*([^)\s;]+)\s+points?\s*(?:;\s*forbidden:\s*([^)]*))?\)")
NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
KEY_NAME_RE = re.compile(r"ch(\d\d)_exercises\.ipynb$")


class ExerciseFormatError(ValueError):
    """A solutions notebook breaks the exercise format; the message names notebook and cell."""


@dataclass
class KeyTest:
    """One key test cell: its points and source."""

    index: int  # 1-based cell number in the key notebook
    question: str
    visibility: str  # "visible" or "hidden"
    points: float
    source: str
    number: int = 0  # 1-based among the question's tests of the same visibility

    @property
    def label(self) -> str:
        """Name shown to students, e.g. ``hidden test 2``."""
        return f"{self.visibility} test {self.number}"


@dataclass
class Question:
    """A question of the key: declared points, answer cells and tests."""

    name: str
    points: float
    header_index: int
    forbidden: list[str] = field(default_factory=list)  # names the answer must not use
    answer_cells: list[int] = field(default_factory=list)
    tests: list[KeyTest] = field(default_factory=list)


@dataclass
class Key:
    """A parsed solutions notebook (the grading key)."""

    path: str
    chapter: str
    questions: dict[str, Question]
    setup: list[tuple[int, str]] = field(default_factory=list)  # (1-based cell, source) of shared setup
    answers: dict[str, list[tuple[int, str]]] = field(default_factory=dict)  # the solutions' answer cells


def source_of(cell: dict) -> str:
    """A cell's source as one string (the JSON may store a list of lines)."""
    src = cell.get("source", "")
    if isinstance(src, list) and all(isinstance(s, str) for s in src):
        return "".join(src)
    if isinstance(src, str):
        return src
    raise ValueError(f"cell source is a {type(src).__name__} holding non-text")


def python_of(source: str) -> str:
    """A cell's source as plain Python (IPython magics and ``!`` lines turned into calls)."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(source)


def first_line(source: str) -> str:
    """The first non-blank line of a cell, stripped."""
    for line in source.splitlines():
        if line.strip():
            return line.strip()
    return ""


def cell_role(cell: dict) -> tuple[str, str | None]:
    """``("answer", q)``, ``("test", q or None)``, ``("setup", None)`` or ``(cell_type, None)``."""
    if cell.get("cell_type") != "code":
        return str(cell.get("cell_type")), None
    head = first_line(source_of(cell))
    if m := ANSWER_RE.fullmatch(head):
        return "answer", m.group(1)
    if TEST_PREFIX_RE.match(head):
        m = TEST_RE.fullmatch(head)
        return "test", m.group(1) if m else None
    return "setup", None


def chapter_of(nb: dict) -> str | None:
    """The chapter ``"NN"`` from notebook metadata ``{"instructlib": {"chapter": "NN"}}``, or None."""
    meta = nb.get("metadata") if isinstance(nb, dict) else None
    info = meta.get("instructlib") if isinstance(meta, dict) else None
    chapter = info.get("chapter") if isinstance(info, dict) else None
    if isinstance(chapter, int) and not isinstance(chapter, bool):
        chapter = f"{chapter:02d}"
    if isinstance(chapter, str) and re.fullmatch(r"\d\d", chapter.strip()):
        return chapter.strip()
    return None


def read_notebook(path: str | Path, max_bytes: int = 50_000_000) -> dict:
    """Load a notebook as a JSON dict; ValueError names the file and what is wrong."""
    try:
        size = Path(path).stat().st_size
        if size > max_bytes:
            raise ValueError(f"{path}: notebook of {size} bytes is larger than {max_bytes}")
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: cannot read: {err}") from None
    try:
        nb = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{err.lineno}: not valid notebook JSON: {err.msg}") from None
    except RecursionError:
        raise ValueError(f"{path}: not a notebook (JSON nested too deeply)") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise ValueError(f"{path}: not a notebook (no list of cells)")
    for i, cell in enumerate(nb["cells"], start=1):
        if not isinstance(cell, dict) or not isinstance(cell.get("cell_type", ""), str):
            raise ValueError(f"{path}: cell {i}: not a notebook cell")
        try:
            source_of(cell)
        except ValueError as err:
            raise ValueError(f"{path}: cell {i}: {err}") from None
    if not isinstance(nb.get("metadata", {}), dict):
        raise ValueError(f"{path}: notebook metadata is not an object")
    return nb


def forbidden_uses(sources: list[tuple[str, str]], forbidden: list[str]) -> list[str]:
    """``"name (where, line L)"`` for each forbidden name in ``sources`` ((where, code) pairs)."""
    if not forbidden:
        return []
    hits = []
    for where, src in sources:
        try:
            used = used_names(src)
        except Exception:  # noqa: BLE001 - SyntaxError, or input IPython cannot transform: it cannot run either
            continue
        hits += [f"{name} ({where}, line {used[name]})" for name in forbidden if name in used]
    return hits


def parse_points(text: str, where: str) -> float:
    """A positive finite number of points, or ExerciseFormatError."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise ExerciseFormatError(f"{where}: bad points {text.strip()!r} (need a positive number)")
    return value


def solution_regions(source: str, where: str) -> list[tuple[int, int]]:
    """(begin, end) line numbers of each solution region; errors on unbalanced or odd markers."""
    regions, begin = [], None
    for no, line in enumerate(source.splitlines()):
        text = line.strip()
        if not MARKER_RE.match(text):
            continue
        if text not in (BEGIN, END):
            raise ExerciseFormatError(f"{where}, line {no + 1}: write the marker exactly as "
                                      f"'{BEGIN}' or '{END}', not {text!r}")
        if text == BEGIN:
            if begin is not None:
                raise ExerciseFormatError(f"{where}, line {no + 1}: '{BEGIN}' inside another solution "
                                          f"(opened at line {begin + 1})")
            begin = no
        else:
            if begin is None:
                raise ExerciseFormatError(f"{where}, line {no + 1}: '{END}' without '{BEGIN}'")
            regions.append((begin, no))
            begin = None
    if begin is not None:
        raise ExerciseFormatError(f"{where}, line {begin + 1}: '{BEGIN}' without '{END}'")
    return regions


def _check_test_code(source: str, where: str) -> None:
    """Test cells must parse and compare with ``check``: an ``assert`` runs where the student rules."""
    try:
        tree = ast.parse(python_of(source))
    except SyntaxError as err:
        raise ExerciseFormatError(f"{where}, line {err.lineno}: test cell is not valid Python: {err.msg}") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert):
            raise ExerciseFormatError(
                f"{where}, line {node.lineno}: test cells compare values with check(label, got, expected) "
                "instead of assert (an assert runs in the student's kernel, where it can be switched off; "
                "see CONTRIBUTING.md, 'Exercise notebooks')")
    calls = _check_calls(tree)
    if not calls:
        raise ExerciseFormatError(f"{where}: a test cell needs at least one check(label, got, expected) call")
    assigned = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    expected_args = [_expected_arg(call) for call in calls]
    loads = Counter(n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load))
    only_expected = Counter(e.id for e in expected_args if isinstance(e, ast.Name))
    for call, expected in zip(calls, expected_args):
        if expected is None:
            raise ExerciseFormatError(f"{where}, line {call.lineno}: check(...) needs label, got and expected")
        # a variable made in the cell only to be the expected value (an input used elsewhere is fine)
        name = expected.id if isinstance(expected, ast.Name) else None
        if name in assigned and loads[name] == only_expected[name]:
            raise ExerciseFormatError(
                f"{where}, line {call.lineno}: write the expected value inline in check(...), not as the "
                f"variable {expected.id!r}: the grader drops the expected expression from the student's "
                "kernel, but a variable computed earlier in the cell would still be there to copy")


def _check_calls(tree: ast.AST) -> list[ast.Call]:
    """Calls of ``check`` (by name or as an attribute) in a parsed cell."""
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and (
        (isinstance(n.func, ast.Name) and n.func.id == "check")
        or (isinstance(n.func, ast.Attribute) and n.func.attr == "check"))]


def _expected_arg(call: ast.Call) -> ast.expr | None:
    if len(call.args) >= 3:
        return call.args[2]
    return next((k.value for k in call.keywords if k.arg == "expected"), None)


def student_test_source(source: str) -> str:
    """A test cell as the student's kernel gets it: each ``check``'s expected expression is ``None``.

    The expected value is computed only in the key's kernel, so a student's kernel never holds it
    (a patched ``check`` could otherwise send it back as its own answer).
    """
    tree = ast.parse(python_of(source))
    for call in _check_calls(tree):
        if len(call.args) >= 3:
            call.args[2] = ast.copy_location(ast.Constant(None), call.args[2])
        for k in call.keywords:
            if k.arg == "expected":
                k.value = ast.copy_location(ast.Constant(None), k.value)
    return ast.unparse(tree)


DYNAMIC_LOOKUPS = frozenset({"getattr", "__import__", "import_module", "eval", "exec", "compile", "attrgetter"})


def _callee(call: ast.Call) -> str:
    return call.func.id if isinstance(call.func, ast.Name) else getattr(call.func, "attr", "")


def used_names(source: str) -> dict[str, int]:
    """Identifiers a cell uses (names, attributes, imports, strings given to getattr/eval/...) and a line."""
    tree = ast.parse(python_of(source))
    found: dict[str, int] = {}
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Name):
            names = [node.id]
        elif isinstance(node, ast.Attribute):
            names = [node.attr]
        elif isinstance(node, ast.alias):
            names = [*node.name.split("."), *([node.asname] if node.asname else [])]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names = [node.name]
        elif isinstance(node, ast.Call) and _callee(node) in DYNAMIC_LOOKUPS:  # getattr(F, "name"), ...
            names = [w for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)
                     for w in NAME_RE.findall(a.value)]
        for name in names:
            found.setdefault(name, getattr(node, "lineno", 0))
    return found


def parse_key(nb: dict, path: str | Path) -> Key:
    """Check a solutions notebook against the exercise format and return its questions and tests."""
    path = str(path)
    chapter = chapter_of(nb)
    if chapter is None:
        raise ExerciseFormatError(f'{path}: notebook metadata needs {{"instructlib": {{"chapter": "NN"}}}}')
    if (m := KEY_NAME_RE.search(path)) and m.group(1) != chapter:
        raise ExerciseFormatError(f"{path}: metadata chapter {chapter!r} does not match the file name")
    questions: dict[str, Question] = {}
    answers: list[tuple[int, str]] = []
    tests: list[KeyTest] = []
    for i, cell in enumerate(nb["cells"], start=1):
        where, src = f"{path}: cell {i}", source_of(cell)
        role, q = cell_role(cell)
        if role == "markdown":
            for m in HEADER_RE.finditer(src):
                pm = HEADER_POINTS_RE.match(m.group(2))
                if not pm:
                    raise ExerciseFormatError(f"{where}: write the header as '## Question {m.group(1)} "
                                              f"(P points)', not {m.group(0).strip()!r}")
                if m.group(1) in questions:
                    raise ExerciseFormatError(f"{where}: question {m.group(1)} is declared twice "
                                              f"(also cell {questions[m.group(1)].header_index})")
                forbidden = [n.strip() for n in (pm.group(2) or "").split(",") if n.strip()]
                if bad := [n for n in forbidden if not NAME_RE.fullmatch(n)]:
                    raise ExerciseFormatError(f"{where}: forbidden names must be identifiers "
                                              f"(e.g. scaled_dot_product_attention), not {bad}")
                questions[m.group(1)] = Question(m.group(1), parse_points(pm.group(1), where), i, forbidden)
        elif role == "test":
            m = TEST_RE.fullmatch(first_line(src))
            if not m:
                raise ExerciseFormatError(f"{where}: malformed test header {first_line(src)!r} (write "
                                          "'# TEST qK visible (points: N)' or '# TEST qK hidden (points: N)')")
            _check_test_code(src, where)
            tests.append(KeyTest(i, m.group(1), m.group(2), parse_points(m.group(3), where), src))
        elif role == "answer":
            answers.append((i, q))
        elif role == "setup" and re.match(r"#\s*EXERCISE\b", first_line(src)):
            raise ExerciseFormatError(f"{where}: malformed answer header {first_line(src)!r} "
                                      "(write '# EXERCISE qK')")
        if role != "answer" and MARKER_RE.search(src):
            raise ExerciseFormatError(f"{where}: solution markers are only allowed in '# EXERCISE qK' "
                                      "answer cells (anything else is shown to students)")
    for i, q in answers:
        where = f"{path}: cell {i}"
        if q not in questions:
            raise ExerciseFormatError(f"{where}: answer cell for unknown question {q} "
                                      f"(no '## Question {q} (P points)' header)")
        questions[q].answer_cells.append(i)
    for t in tests:
        if t.question not in questions:
            raise ExerciseFormatError(f"{path}: cell {t.index}: test cell for unknown question {t.question} "
                                      f"(no '## Question {t.question} (P points)' header)")
        question = questions[t.question]
        question.tests.append(t)
        t.number = sum(x.visibility == t.visibility for x in question.tests)
    for q in questions.values():
        where = f"{path}: cell {q.header_index} (question {q.name})"
        if not q.tests:
            raise ExerciseFormatError(f"{where}: question has no '# TEST {q.name} ...' cells")
        if not q.answer_cells:
            raise ExerciseFormatError(f"{where}: question has no '# EXERCISE {q.name}' answer cell")
        regions = [solution_regions(source_of(nb["cells"][i - 1]), f"{path}: cell {i}")
                   for i in q.answer_cells]
        if not any(regions):
            raise ExerciseFormatError(f"{where}: no '{BEGIN}' region in its answer cells")
        total = sum(t.points for t in q.tests)
        if not math.isclose(total, q.points):
            raise ExerciseFormatError(f"{where}: header says {q.points:g} points but its tests add up "
                                      f"to {total:g}")
    if not questions:
        raise ExerciseFormatError(f"{path}: no '## Question qK (P points)' header found")
    setup = [(f"cell {i}", source_of(c)) for i, c in enumerate(nb["cells"], start=1) if cell_role(c)[0] == "setup"]
    for q in questions.values():
        answers = [(f"cell {i}", source_of(nb["cells"][i - 1])) for i in q.answer_cells]
        if hits := forbidden_uses(setup + answers, q.forbidden):
            raise ExerciseFormatError(f"{path}: question {q.name}: the key itself uses forbidden {hits[0]} (setup "
                                      "and answer cells must not mention it; import it inside the test cells)")
    answer_sources = {q.name: [(i, source_of(nb["cells"][i - 1])) for i in q.answer_cells]
                      for q in questions.values()}
    return Key(path, chapter, questions, [(int(w.split()[1]), s) for w, s in setup], answer_sources)


def load_key(path: str | Path) -> Key:
    """Read and parse a solutions notebook (ValueError for unreadable files)."""
    return parse_key(read_notebook(path), path)
