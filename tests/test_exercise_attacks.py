"""Exercises resist plausible wrong answers and library one-liners (issue 15).

One file per chapter, ``tests/exercise_attacks/chNN.yaml``::

    q1:
      wrong: |        # required for every question: a plausible but wrong answer; must NOT get full points
        def f(x):
            return x
      one_liner: |    # only (and required) for questions with forbidden names: must score 0
        f = torch.nn.functional.gelu

A block replaces the lines from ``### BEGIN SOLUTION`` to ``### END SOLUTION`` (markers included) and
is indented at the marker, exactly as the builder puts the student stub there; a question whose
answer cells hold several solution regions takes a list of blocks in cell order. The submissions
are built with ``instructlib.grading.build.build_exercise(..., answers=...)`` and graded by
``instructlib.grading.grader.grade``, the code that grades students. Per chapter two submissions
are graded (all ``wrong`` blocks in one, all ``one_liner`` blocks in the other), all chapters in one
grading run, so the whole file costs about two gradings per chapter.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from instructlib.grading.build import build_exercise, fill_solutions, notebook_json
from instructlib.grading.exercise import load_key, read_notebook, source_of
from instructlib.grading.grader import grade

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS, ATTACKS = ROOT / "solutions", Path(__file__).resolve().parent / "exercise_attacks"
FILES = sorted(ATTACKS.glob("ch[0-9][0-9].yaml"))
CHAPTERS = [f.stem[2:] for f in FILES]
IN_SCOPE = ("01", "02", "03", "04", "05")  # issue 15: chapters whose exercises must resist both attacks
KINDS = ("wrong", "one_liner")
TIMEOUT = 300  # per question, as tests/test_exercises.py: generous for a loaded machine
ANSWER_FAILED = re.compile(r"answer cell \d+ raised| in answer cell \d+")  # grade_question's notes
FORBIDDEN_NOTE = re.compile(r"uses `(\w+)` \((setup|answer) cell \d+, line \d+\), which question (q\w+) forbids: ")


class AttackFormatError(ValueError):
    """An attack file is malformed; the message reads ``file:line: field: problem``."""


def load_attacks(path: Path) -> dict[str, dict[str, list[str]]]:
    """question -> {"wrong": [blocks], "one_liner": [blocks]} from an attack file (AttackFormatError)."""
    rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise AttackFormatError(f"{rel}:{mark.line + 1 if mark else 1}: (file): not valid YAML: "
                                f"{getattr(err, 'problem', err)}") from None
    if not isinstance(root, yaml.MappingNode):
        raise AttackFormatError(f"{rel}:{root.start_mark.line + 1 if root else 1}: (file): "
                                "expected a mapping of questions (q1: {wrong: ..., one_liner: ...})")
    out: dict[str, dict[str, list[str]]] = {}
    for qnode, body in root.value:
        q, line = qnode.value, qnode.start_mark.line + 1
        if not re.fullmatch(r"q\w+", str(q)):
            raise AttackFormatError(f"{rel}:{line}: {q}: question names look like q1, q2, ...")
        if q in out:
            raise AttackFormatError(f"{rel}:{line}: {q}: question given twice")
        if not isinstance(body, yaml.MappingNode):
            raise AttackFormatError(f"{rel}:{line}: {q}: expected a mapping with 'wrong' (and 'one_liner')")
        out[q] = {}
        for knode, vnode in body.value:
            kind, kline = knode.value, knode.start_mark.line + 1
            if kind not in KINDS:
                raise AttackFormatError(f"{rel}:{kline}: {q}.{kind}: unknown field (use {' or '.join(KINDS)})")
            items = vnode.value if isinstance(vnode, yaml.SequenceNode) else [vnode]
            if not items or not all(isinstance(n, yaml.ScalarNode) and n.value.strip() for n in items):
                raise AttackFormatError(f"{rel}:{kline}: {q}.{kind}: expected a code block or a list of them "
                                        "(one per solution region, in cell order)")
            out[q][kind] = [n.value for n in items]
        if "wrong" not in out[q]:
            raise AttackFormatError(f"{rel}:{line}: {q}.wrong: missing (every question needs a wrong answer)")
    return out


def _problems_against_key(attacks: dict, key_path: Path, rel: str) -> list[str]:
    """What an attack file lacks or has too much of, compared with the chapter's key."""
    key = load_key(key_path)
    found = [f"{rel}: {q}: no such question in {key_path.name}" for q in attacks if q not in key.questions]
    for q, question in key.questions.items():
        given = attacks.get(q, {})
        if "wrong" not in given:
            found.append(f"{rel}: {q}.wrong: missing (every question needs a plausibly wrong answer)")
        if question.forbidden and "one_liner" not in given:
            found.append(f"{rel}: {q}.one_liner: missing (the question forbids {', '.join(question.forbidden)})")
        if not question.forbidden and "one_liner" in given:
            found.append(f"{rel}: {q}.one_liner: the question forbids no names, so nothing stops a one-liner: "
                         "add a 'forbidden:' list to its header, or drop the block")
    return found


@pytest.fixture(scope="module")
def attacks() -> dict[str, dict | str]:
    """chapter -> its parsed attack file, or why it cannot be used."""
    parsed: dict[str, dict | str] = {}
    for path, chapter in zip(FILES, CHAPTERS):
        key = SOLUTIONS / f"ch{chapter}_exercises.ipynb"
        rel = str(path.relative_to(ROOT))
        try:
            found = load_attacks(path)
        except AttackFormatError as err:
            parsed[chapter] = str(err)
            continue
        if not key.exists():
            parsed[chapter] = f"{rel}: no key {key.relative_to(ROOT)}"
        elif problems := _problems_against_key(found, key, rel):
            parsed[chapter] = "; ".join(problems)
        else:
            parsed[chapter] = found
    return parsed


@pytest.fixture(scope="module")
def graded(attacks, tmp_path_factory) -> dict:
    """Build each chapter's 'wrong' and 'one_liner' submission and grade them all in one run."""
    base = tmp_path_factory.mktemp("attacks")
    paths, built = [], {}
    for chapter, found in attacks.items():
        if isinstance(found, str):
            continue
        key = SOLUTIONS / f"ch{chapter}_exercises.ipynb"
        nb = read_notebook(key)
        for kind in KINDS:
            answers = {q: blocks[kind] for q, blocks in found.items() if kind in blocks}
            if not answers:
                continue
            target = base / f"ch{chapter}" / f"{kind}.ipynb"
            target.parent.mkdir(exist_ok=True)
            try:
                target.write_text(notebook_json(build_exercise(nb, key, answers=answers)), encoding="utf-8")
            except ValueError as err:
                built[chapter, kind] = str(err)
                continue
            built[chapter, kind] = target
            paths.append(target)
    run = grade(paths, key_dir=SOLUTIONS, timeout=TIMEOUT, jobs=2) if paths else None
    rows = {(r.student, r.chapter, r.question): r for r in run.rows} if run else {}
    return {"built": built, "rows": rows, "run": run}


def _usable(attacks, graded, chapter: str, kind: str) -> bool:
    """Fail on a broken attack file or submission; False when the chapter has no such attack."""
    if isinstance(attacks[chapter], str):
        pytest.fail(attacks[chapter])
    built = graded["built"].get((chapter, kind))
    if isinstance(built, str):
        pytest.fail(f"cannot build the {kind} submission: {built}")
    return built is not None


# ---------------------------------------------------------------- the mechanism itself (fast)


def test_fill_solutions_indents_blocks_at_the_marker():
    src = "# EXERCISE q1\ndef f(x):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION\n\nY = 1\n"
    out = fill_solutions(src, ["y = x * 2\nif y:\n    y += 1\nreturn y"], "cell 1")
    assert out == ("# EXERCISE q1\ndef f(x):\n    y = x * 2\n    if y:\n        y += 1\n    return y\n\nY = 1\n")
    with pytest.raises(ValueError, match="cell 1: 2 answer block"):
        fill_solutions(src, ["a", "b"], "cell 1")


def test_build_with_answers_fills_only_the_given_questions():
    key = ROOT / "tests" / "fixtures" / "grading" / "solutions" / "ch99_exercises.ipynb"
    nb = read_notebook(key)
    plain = build_exercise(copy.deepcopy(nb), key)
    filled = build_exercise(nb, key, answers={"q1": ["return a - b"]})
    changed = [(source_of(a), source_of(b)) for a, b in zip(plain["cells"], filled["cells"]) if a != b]
    assert len(changed) == 1 and "return a - b" in changed[0][1] and "NotImplementedError" not in changed[0][1]
    with pytest.raises(ValueError, match="no question q42"):
        build_exercise(nb, key, answers={"q42": ["x = 1"]})
    with pytest.raises(ValueError, match="question q1: 2 answer block"):
        build_exercise(nb, key, answers={"q1": ["x = 1", "y = 2"]})


@pytest.mark.parametrize("text, message", [
    ("q1: [", r"bad\.yaml:1: \(file\): not valid YAML"),
    ("- q1\n", r"bad\.yaml:1: \(file\): expected a mapping of questions"),
    ("q1:\n  wrong: x = 1\nq1:\n  wrong: x = 2\n", r"bad\.yaml:3: q1: question given twice"),
    ("q1:\n  one_liner: x = 1\n", r"bad\.yaml:1: q1\.wrong: missing"),
    ("q1:\n  wrong: x = 1\n  right: y\n", r"bad\.yaml:3: q1\.right: unknown field"),
    ("q1:\n  wrong: []\n", r"bad\.yaml:2: q1\.wrong: expected a code block"),
    ("answer:\n  wrong: x\n", r"bad\.yaml:1: answer: question names look like q1"),
])
def test_malformed_attack_file_names_file_line_field_problem(tmp_path, text, message):
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(AttackFormatError, match=message):
        load_attacks(tmp_path / "bad.yaml")


# ---------------------------------------------------------------- the chapters


def test_every_chapter_in_scope_has_an_attack_file():
    missing = [f"tests/exercise_attacks/ch{c}.yaml" for c in IN_SCOPE
               if (SOLUTIONS / f"ch{c}_exercises.ipynb").exists() and c not in CHAPTERS]
    assert not missing, f"issue 15 asks for wrong-answer and one-liner attacks on these chapters: {missing}"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[f"ch{c}" for c in CHAPTERS])
def test_attack_file_covers_its_key(chapter, attacks):
    if isinstance(attacks[chapter], str):
        pytest.fail(attacks[chapter])


def test_grading_run_is_clean(graded):
    run = graded["run"]
    if run is None:
        pytest.skip("no usable attack file")
    assert not run.errors, f"grader errors (a key that fails in the grader?): {run.errors}"
    assert not run.problems, f"submissions that could not be graded: {run.problems}"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[f"ch{c}" for c in CHAPTERS])
def test_wrong_answers_lose_points(chapter, attacks, graded):
    """Every question's plausible wrong answer runs (its answer cells raise nothing) and loses points."""
    _usable(attacks, graded, chapter, "wrong")
    for q in attacks[chapter]:
        r = graded["rows"].get(("wrong", chapter, q))
        assert r is not None, f"ch{chapter} {q}: no grade for the wrong submission"
        assert r.points < r.max_points, (f"ch{chapter} {q}: the wrong answer in tests/exercise_attacks/"
                                         f"ch{chapter}.yaml gets full points: the tests do not catch it ({r.feedback})")
        assert not ANSWER_FAILED.search(r.feedback), (
            f"ch{chapter} {q}: the wrong answer's own cell fails, so it proves nothing about the tests; make it "
            f"a plausible answer that runs: {r.feedback}")


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[f"ch{c}" for c in CHAPTERS])
def test_library_one_liners_score_zero(chapter, attacks, graded):
    """A call to the library the question rebuilds scores 0, and the feedback says why (name, cell, line)."""
    if not _usable(attacks, graded, chapter, "one_liner"):
        pytest.skip(f"ch{chapter}: no question forbids a name")
    for q, blocks in attacks[chapter].items():
        if "one_liner" not in blocks:
            continue
        r = graded["rows"].get(("one_liner", chapter, q))
        assert r is not None, f"ch{chapter} {q}: no grade for the one-liner submission"
        assert r.points == 0, f"ch{chapter} {q}: the library one-liner earns {r.points:g} points ({r.feedback})"
        m = FORBIDDEN_NOTE.search(r.feedback)
        assert m and m.group(3) == q, (f"ch{chapter} {q}: the one-liner scores 0 but not because it calls a "
                                       f"forbidden name, or the feedback does not say which and where: {r.feedback}")
