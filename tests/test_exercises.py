"""Every solutions/chNN_exercises.ipynb: exercises/ is regenerated without drift, the grader gives
the solutions full marks and the generated stubs zero (COURSE.md §6)."""
from __future__ import annotations

from pathlib import Path

import pytest

from instructlib.grading.build import build_exercise, notebook_json
from instructlib.grading.exercise import read_notebook
from instructlib.grading.grader import grade

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS, EXERCISES = ROOT / "solutions", ROOT / "exercises"
KEYS = sorted(SOLUTIONS.glob("ch[0-9][0-9]_exercises.ipynb"))
TIMEOUT = 300  # per question; generous for a loaded machine (questions should take < 20 s in ci)
CHAPTER = {key: key.name[2:4] for key in KEYS}


@pytest.fixture(scope="module")
def stubs(tmp_path_factory) -> dict[Path, Path | str]:
    """The generated student notebook of each key, in a folder named ``stub`` (or why it failed)."""
    out = tmp_path_factory.mktemp("grading") / "stub"
    out.mkdir()
    built: dict[Path, Path | str] = {}
    for key in KEYS:
        try:
            (out / key.name).write_text(notebook_json(build_exercise(read_notebook(key), key)),
                                        encoding="utf-8")
            built[key] = out / key.name
        except ValueError as err:
            built[key] = str(err)
    return built


@pytest.fixture(scope="module")
def grades(stubs) -> dict[tuple[str, str, str], object]:
    """Grade every key (student ``solutions``) and every stub (student ``stub``) once."""
    ok = [key for key in KEYS if isinstance(stubs[key], Path)]
    run = grade([*ok, *(stubs[key] for key in ok)], key_dir=SOLUTIONS, timeout=TIMEOUT, jobs=2)
    assert not run.problems, run.problems
    return {(r.student, r.chapter, r.question): r for r in run.rows}


def _stub(stubs, key) -> Path:
    if not isinstance(stubs[key], Path):
        pytest.fail(f"cannot build the exercise notebook: {stubs[key]}")
    return stubs[key]


@pytest.mark.parametrize("key", KEYS, ids=[k.name for k in KEYS])
def test_exercises_regenerate_without_drift(key, stubs):
    stub, committed = _stub(stubs, key), EXERCISES / key.name
    assert committed.exists(), f"{committed.relative_to(ROOT)} is missing: run `make exercises`"
    assert committed.read_bytes() == stub.read_bytes(), (
        f"{committed.relative_to(ROOT)} differs from what {key.relative_to(ROOT)} generates: "
        "run `make exercises` (exercises/ is generated, never edited by hand)")


def test_no_orphan_exercises():
    orphans = [p.name for p in EXERCISES.glob("ch*_exercises.ipynb") if not (SOLUTIONS / p.name).exists()]
    assert not orphans, f"exercises without a solutions/ source (delete them): {orphans}"


def _rows(grades, student: str, key: Path) -> list:
    """The grade rows of ``student`` for the chapter of ``key`` (there must be some)."""
    rows = [r for (who, ch, _), r in grades.items() if who == student and ch == CHAPTER[key]]
    assert rows, f"no grades for {student} in {key.name}"
    return rows


@pytest.mark.parametrize("key", KEYS, ids=[k.name for k in KEYS])
def test_solutions_get_full_marks(key, stubs, grades):
    """Also proves the key runs in the grader (a key failing its own checks is a GRADER ERROR row)."""
    _stub(stubs, key)
    for r in _rows(grades, "solutions", key):
        assert r.points == r.max_points, f"{key.name} {r.question}: {r.points:g}/{r.max_points:g}: {r.feedback}"


@pytest.mark.parametrize("key", KEYS, ids=[k.name for k in KEYS])
def test_stubs_get_zero(key, stubs, grades):
    _stub(stubs, key)
    for r in _rows(grades, "stub", key):
        assert r.points == 0, (f"{key.name} {r.question}: the stub earns {r.points:g} points; every test "
                               f"must fail on `raise NotImplementedError` ({r.feedback})")
