"""Exercise builder and grader on a tiny key (tests/fixtures/grading) and hostile submissions."""
from __future__ import annotations

import copy
import csv
import json
import os
import re
import time
from pathlib import Path

import pytest

from instructlib.cli import main as cli_main
from instructlib.grading.build import build_exercise, build_exercises, notebook_json
from instructlib.grading.exercise import ExerciseFormatError, load_key, parse_key, read_notebook, source_of
from instructlib.grading.grader import student_name
from instructlib.grading.kernel import DIED, ERROR, FLOOD, NOT_RUN, OK, TIMEOUT, run_cells

KEY_DIR = Path(__file__).parent / "fixtures" / "grading" / "solutions"
KEY = KEY_DIR / "ch99_exercises.ipynb"
LIMIT = 4  # seconds per question: the fixture's questions take milliseconds


@pytest.fixture(scope="module")
def key_nb() -> dict:
    return read_notebook(KEY)


@pytest.fixture(scope="module")
def stub_nb(key_nb) -> dict:
    return build_exercise(key_nb, KEY)


def find(nb: dict, first_line: str) -> dict:
    """The last cell starting with ``first_line`` (for q2: ``shift``, not the helper ``double``)."""
    return [c for c in nb["cells"] if source_of(c).startswith(first_line)][-1]


# ---------------------------------------------------------------- builder


def test_stub_replaces_solutions_at_marker_indentation(stub_nb):
    q1 = source_of(find(stub_nb, "# EXERCISE q1"))
    assert q1.endswith('"""Sum of a and b."""\n    raise NotImplementedError')
    q3 = source_of(find(stub_nb, "# EXERCISE q3"))
    assert q3 == "# EXERCISE q3\nraise NotImplementedError"
    text = notebook_json(stub_nb)
    assert "SOLUTION" not in text and "return a + b" not in text and "isqrt" not in text
    helper = [c for c in stub_nb["cells"] if "def double" in source_of(c)]
    assert source_of(helper[0]) == "# EXERCISE q2\ndef double(x):\n    return 2 * x"  # no markers: kept


def test_hidden_tests_removed_visible_kept(key_nb, stub_nb):
    heads = [source_of(c).split("\n", 1)[0] for c in stub_nb["cells"]]
    assert "# TEST q1 visible (points: 1)" in heads and "# TEST q2 visible (points: 2)" in heads
    assert not [h for h in heads if "hidden" in h]
    assert len(stub_nb["cells"]) == len(key_nb["cells"]) - 2
    assert key_nb["metadata"] == stub_nb["metadata"]
    assert "exercises/ch99_exercises.ipynb" in source_of(stub_nb["cells"][0])  # badge untouched


def test_outputs_and_execution_artefacts_cleared(key_nb):
    nb = copy.deepcopy(key_nb)
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "secret\n"}]
            cell["execution_count"] = 7
            cell["metadata"]["execution"] = {"iopub.status.idle": "2026-01-01T00:00:00Z"}
            cell["metadata"]["tags"] = ["keep-me"]
    out = build_exercise(nb, KEY)
    code = [c for c in out["cells"] if c["cell_type"] == "code"]
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    assert all(c["metadata"] == {"tags": ["keep-me"]} for c in code)
    assert "secret" not in notebook_json(out)


def test_build_is_deterministic_and_atomic(tmp_path):
    first = build_exercises(KEY_DIR, tmp_path / "a")
    second = build_exercises(KEY_DIR, tmp_path / "b")
    assert [p.name for p in first] == ["ch99_exercises.ipynb"]
    assert first[0].read_bytes() == second[0].read_bytes()
    mtime = first[0].stat().st_mtime_ns
    build_exercises(KEY_DIR, tmp_path / "a")  # unchanged output is not rewritten
    assert first[0].stat().st_mtime_ns == mtime
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["ch99_exercises.ipynb"]  # no temp left
    # nbformat reads it back and finds it valid; the same JSON layout as nbformat.write
    nbformat = pytest.importorskip("nbformat")
    nbformat.validate(nbformat.read(first[0], as_version=4))
    assert notebook_json(read_notebook(KEY)) == KEY.read_text(encoding="utf-8")


def test_cli_build_check(tmp_path, capsys):
    out = tmp_path / "exercises"
    assert cli_main(["build-exercises", str(KEY_DIR), str(out), "--check"]) == 1
    assert "run `make exercises`" in capsys.readouterr().err
    assert cli_main(["build-exercises", str(KEY_DIR), str(out)]) == 0
    assert cli_main(["build-exercises", str(KEY_DIR), str(out), "--check"]) == 0


def _mutate(nb: dict, cell_start: str, old: str, new: str) -> dict:
    nb = copy.deepcopy(nb)
    cell = next(c for c in nb["cells"] if source_of(c).startswith(cell_start) and old in source_of(c))
    cell["source"] = source_of(cell).replace(old, new)
    return nb


MALFORMED = {  # case: (cell starting with, text, replaced by, expected error after "KEY: ")
    "missing END": ("# EXERCISE q1", "    ### END SOLUTION", "",
                    r"cell 5, line 4: '### BEGIN SOLUTION' without"),
    "END without BEGIN": ("# EXERCISE q1", "    ### BEGIN SOLUTION\n", "",
                          r"cell 5, line 5: '### END SOLUTION' without"),
    "nested BEGIN": ("# EXERCISE q1", "return a + b", "### BEGIN SOLUTION", r"cell 5, line 5: .* inside another"),
    "otter-style marker": ("# EXERCISE q1", "### BEGIN", "# BEGIN", r"cell 5, line 4: write the marker exactly"),
    "marker outside answer": ("import math", "OFFSET = 10", "### BEGIN SOLUTION\nOFFSET = 10\n### END SOLUTION",
                              r"cell 3: solution markers are only allowed"),
    "test for unknown question": ("# TEST q2", "# TEST q2", "# TEST q7",
                                  r"cell 11: test cell for unknown question q7"),
    "answer for unknown question": ("# EXERCISE q3", "q3", "q8", r"cell 13: answer cell for unknown question q8"),
    "question without tests": ("# TEST q3", "# TEST q3 hidden (points: 1.5)", "# q3 check",
                               r"cell 12 \(question q3\): question has no '# TEST q3"),
    "points do not add up": ("## Question q2", "(2 points)", "(5 points)",
                             r"cell 8 \(question q2\): header says 5"),
    "non-numeric points": ("# TEST q1 visible", "(points: 1)", "(points: one)", r"cell 6: bad points 'one'"),
    "negative points": ("# TEST q1 visible", "(points: 1)", "(points: -1)", r"cell 6: bad points '-1'"),
    "malformed test header": ("# TEST q1 visible", "visible", "public", r"cell 6: malformed test header"),
    "malformed answer header": ("# EXERCISE q2\ndef double", "# EXERCISE q2", "# EXERCISE Q2",
                                r"cell 9: malformed answer header '# EXERCISE Q2'"),
    "header without points": ("## Question q2", "(2 points)", "", r"cell 8: write the header as"),
}


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_malformed_key_errors_name_notebook_cell_and_problem(key_nb, case):
    cell_start, old, new, message = MALFORMED[case]
    with pytest.raises(ExerciseFormatError, match=re.escape(str(KEY)) + ": " + message):
        build_exercise(_mutate(key_nb, cell_start, old, new), KEY)


def test_missing_chapter_metadata_and_nothing_written(key_nb, tmp_path):
    bad = copy.deepcopy(key_nb)
    del bad["metadata"]["instructlib"]
    with pytest.raises(ExerciseFormatError, match=r"ch99_exercises\.ipynb: notebook metadata needs"):
        parse_key(bad, KEY)
    src = tmp_path / "solutions"
    src.mkdir()
    (src / "ch01_exercises.ipynb").write_text(KEY.read_text().replace('"99"', '"01"'))
    (src / "ch02_exercises.ipynb").write_text(notebook_json(bad))
    with pytest.raises(ExerciseFormatError, match="ch02_exercises.ipynb"):
        build_exercises(src, tmp_path / "exercises")
    assert not (tmp_path / "exercises").exists()  # the good notebook was not written either


def test_key_parses_points(key_nb):
    key = load_key(KEY)
    assert key.chapter == "99"
    assert {q: (k.points, [(t.label, t.points) for t in k.tests]) for q, k in key.questions.items()} == {
        "q1": (3, [("visible test 1", 1), ("hidden test 1", 2)]),
        "q2": (2, [("visible test 1", 2)]),
        "q3": (1.5, [("hidden test 1", 1.5)]),
    }
    assert key.questions["q2"].answer_cells == [9, 10]


def test_student_name():
    assert student_name("subs/alice.ipynb") == "alice"
    assert student_name("subs/bob/ch03_exercises.ipynb") == "bob"


# ---------------------------------------------------------------- kernel runner


def test_run_cells_outcomes():
    runs = run_cells(["x = 1", "assert x == 2, 'x is not 2'", "import sys; sys.exit(3)",
                      "raise KeyboardInterrupt", "import no_such_module_xyz", "print(x)"], timeout=LIMIT)
    assert [(r.status, r.error) for r in runs] == [
        (OK, ""), (ERROR, "AssertionError: x is not 2"), (ERROR, "SystemExit: 3"),
        (ERROR, "KeyboardInterrupt"), (ERROR, "ModuleNotFoundError: No module named 'no_such_module_xyz'"),
        (OK, "")]


@pytest.mark.parametrize("code, statuses", [
    ("import os; os._exit(1)", (DIED,)),
    ("while True:\n    pass", (TIMEOUT,)),
    ("import signal; signal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass", (TIMEOUT,)),
    ("while True:\n    print('x' * 1000)", (FLOOD,)),
    # below sys.stdout: ipykernel forwards fd output from a thread, so the cap or the clock stops it
    ("import os\nwhile True:\n    os.write(1, b'y' * 100_000)", (FLOOD, TIMEOUT)),
], ids=["os._exit", "loop", "loop ignoring SIGINT", "print flood", "fd flood"])
def test_run_cells_survives_hostile_cell(code, statuses):
    runs = run_cells(["y = 2", code, "print(y)"], timeout=2, max_output=100_000)
    assert runs[0].status == OK and runs[1].status in statuses and runs[2].status == NOT_RUN, runs


def test_kernel_and_its_children_are_killed(tmp_path):
    pids = tmp_path / "pids"
    code = (f"import os, subprocess, sys\nchild = subprocess.Popen([sys.executable, '-c', "
            f"'import time; time.sleep(600)'])\nopen({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}')\n"
            "while True: pass")
    assert [r.status for r in run_cells([code], timeout=3)] == [TIMEOUT]
    for pid in map(int, pids.read_text().split()):
        for _ in range(50):  # the child is re-parented and reaped by init: allow it a moment
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            with open(f"/proc/{pid}/stat") as f:  # a zombie is dead too
                if f.read().split(") ")[1].startswith("Z"):
                    break
            time.sleep(0.1)
        else:
            pytest.fail(f"process {pid} survived the grader")


# ---------------------------------------------------------------- grader end to end


def submission(stub_nb: dict, answers: dict[str, str], replace: dict[str, str] | None = None) -> str:
    """The student notebook with each question's stubbed answer cell (and any other cell) replaced."""
    nb = copy.deepcopy(stub_nb)
    for q, code in answers.items():
        find(nb, f"# EXERCISE {q}")["source"] = f"# EXERCISE {q}\n{code}"
    for first_line, code in (replace or {}).items():
        find(nb, first_line)["source"] = code
    return notebook_json(nb)


ADD, SHIFT, ANSWER = "def add(a, b):\n    return a + b", "def shift(x):\n    return x + OFFSET", "ANSWER = 42"
SUBMISSIONS = {  # student -> (answers for q1, q2, q3, cell replacements)
    "raiser": ({"q1": "def add(a, b):\n    raise ValueError('boom')",
                "q2": "import sys\nsys.exit(1)\n" + SHIFT, "q3": ANSWER}, None),
    "looper": ({"q1": ADD, "q2": "while True:\n    pass", "q3": "raise KeyboardInterrupt"}, None),
    "crasher": ({"q1": "import os\nos._exit(1)", "q2": SHIFT, "q3": "print('x' * 10_000_000)\n" + ANSWER}, None),
    "partial": ({"q1": "def add(a, b):\n    return abs(a) + abs(b)", "q2": "def shift(x):\n    return 0",
                 "q3": ANSWER}, {"# TEST q2 visible": "# TEST q2 visible (points: 2)\npass"}),
}
EXPECTED = {  # student -> {question: (points, words in the feedback)}
    "ch99": {"q1": (3, "all tests passed"), "q2": (2, "all tests passed"), "q3": (1.5, "all tests passed")},
    "stub": {"q1": (0, "NotImplementedError"), "q2": (0, "NotImplementedError"),
             "q3": (0, "answer cell 12 raised NotImplementedError")},
    "raiser": {"q1": (0, "ValueError: boom"), "q2": (0, "raised SystemExit: 1"), "q3": (1.5, "all tests passed")},
    "looper": {"q1": (3, "all tests passed"), "q2": (0, f"time limit of {LIMIT} s exceeded in answer cell 9"),
               "q3": (0, "raised KeyboardInterrupt")},
    "crasher": {"q1": (0, "the kernel died"), "q2": (2, "all tests passed"), "q3": (0, "output limit")},
    "partial": {"q1": (1, "hidden test 1 failed (2 pts): AssertionError: negative numbers"),
                "q2": (0, "visible test 1 failed (2 pts): AssertionError: got 0"), "q3": (1.5, "all tests passed")},
}


@pytest.fixture(scope="module")
def gradebook(tmp_path_factory, stub_nb):
    """Grade the key, the stub, hostile and broken submissions in one run of the CLI."""
    d = tmp_path_factory.mktemp("submissions")
    (d / "stub.ipynb").write_text(notebook_json(stub_nb))
    (d / "ch99").mkdir()
    (d / "ch99" / "ch99_exercises.ipynb").write_text(KEY.read_text())  # student name from the folder
    for student, (answers, replace) in SUBMISSIONS.items():
        (d / f"{student}.ipynb").write_text(submission(stub_nb, answers, replace))
    (d / "garbled.ipynb").write_text('{"cells": [')
    nometa = json.loads(submission(stub_nb, {"q1": ADD, "q2": SHIFT, "q3": ANSWER}))
    del nometa["metadata"]["instructlib"]
    (d / "nometa.ipynb").write_text(json.dumps(nometa))
    paths = [d / "ch99" / "ch99_exercises.ipynb", d / "stub.ipynb", *(d / f"{s}.ipynb" for s in SUBMISSIONS),
             d / "garbled.ipynb", d / "nometa.ipynb"]
    out, feedback = d / "grades.csv", d / "feedback"
    status = cli_main(["grade", *map(str, paths), "--out", str(out), "--key-dir", str(KEY_DIR),
                       "--timeout", str(LIMIT), "--max-output", "1000000", "--feedback-dir", str(feedback),
                       "--jobs", "2"])
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    return status, rows, feedback, d


def test_gradebook_scores_every_student_and_question(gradebook):
    status, rows, _, _ = gradebook
    assert status == 1  # two submissions could not be graded; the run still finished
    got = {(r["student"], r["question"]): r for r in rows}
    for student, questions in EXPECTED.items():
        for q, (points, words) in questions.items():
            row = got[student, q]
            assert float(row["points"]) == points, (student, q, row["feedback"])
            assert words in row["feedback"], (student, q, row["feedback"])
            assert row["chapter"] == "99" and float(row["max_points"]) == {"q1": 3, "q2": 2, "q3": 1.5}[q]
    assert [r["student"] for r in rows][:3] == ["ch99"] * 3  # submission order, then question order


def test_gradebook_broken_submissions_cost_only_their_points(gradebook):
    _, rows, _, _ = gradebook
    broken = {r["student"]: r for r in rows if r["student"] in ("garbled", "nometa")}
    assert broken["garbled"]["points"] == "0" and "not valid notebook JSON" in broken["garbled"]["feedback"]
    assert broken["nometa"]["points"] == "0" and '"chapter": "NN"' in broken["nometa"]["feedback"]
    assert len(rows) == 3 * len(EXPECTED) + 2
    assert list(rows[0]) == ["student", "chapter", "question", "points", "max_points", "feedback"]


def test_feedback_files(gradebook):
    _, _, feedback, _ = gradebook
    text = (feedback / "partial.md").read_text()
    assert "Total: 2.5 / 6.5" in text and "## q1: 1 / 3" in text
    assert "- hidden test 1 failed (2 pts): AssertionError: negative numbers" in text
    assert sorted(p.stem for p in feedback.iterdir()) == sorted([*EXPECTED, "garbled", "nometa"])


def test_chapter_option_for_lost_metadata(gradebook, tmp_path):
    *_, d = gradebook
    out = tmp_path / "g.csv"
    assert cli_main(["grade", str(d / "garbled.ipynb"), "--out", str(out), "--key-dir", str(KEY_DIR),
                     "--chapter", "99"]) == 1
    rows = list(csv.DictReader(out.open()))
    assert [(r["question"], r["points"], r["max_points"]) for r in rows] == [
        ("q1", "0", "3"), ("q2", "0", "2"), ("q3", "0", "1.5")]


def test_duplicate_student_is_refused(tmp_path):
    for sub in ("a/x", "b/x"):
        (tmp_path / sub).mkdir(parents=True)
        (tmp_path / sub / "ch99_exercises.ipynb").write_text(KEY.read_text())
    assert cli_main(["grade", str(tmp_path / "a/x/ch99_exercises.ipynb"), str(tmp_path / "b/x/ch99_exercises.ipynb"),
                     "--out", str(tmp_path / "g.csv"), "--key-dir", str(KEY_DIR)]) == 2
    assert not (tmp_path / "g.csv").exists()


def test_grader_failure_costs_only_that_question(monkeypatch, tmp_path):
    """An unexpected error inside the grader itself (not the submission) is reported, not fatal."""
    from instructlib.grading import grader, kernel

    def fake_run_cells(cells, **_):
        if any("OFFSET" in c and "def shift" in c for c in cells):
            raise RuntimeError("zmq exploded")
        return [kernel.CellRun(OK) for _ in cells]

    monkeypatch.setattr(grader.kernel, "run_cells", fake_run_cells)
    rows, problems = grader.grade([KEY], key_dir=KEY_DIR, timeout=1)
    assert [(r.question, r.points) for r in rows] == [("q1", 3), ("q2", 0), ("q3", 1.5)]
    assert "grader error" in rows[1].feedback and "zmq exploded" in problems[0]
