"""Exercise builder, value checks, sandboxed kernels and the grader on a tiny key (tests/fixtures/grading),
graded together with hostile submissions (issue 16)."""
from __future__ import annotations

import copy
import csv
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from instructlib.cli import main as cli_main
from instructlib.grading.build import build_exercise, build_exercises, notebook_json
from instructlib.grading.exercise import ExerciseFormatError, load_key, parse_key, read_notebook, source_of
from instructlib.grading.checks import ValueFormatError, check, compare, decode, encode, raises, seed
from instructlib.grading.exercise import student_test_source
from instructlib.grading import sandbox
from instructlib.grading.grader import csv_safe, feedback_file_name, grade, student_name
from instructlib.grading.kernel import DIED, ERROR, FLOOD, NOT_RUN, OK, TIMEOUT, Sandbox, run_cells

KEY_DIR = Path(__file__).parent / "fixtures" / "grading" / "solutions"
KEY = KEY_DIR / "ch99_exercises.ipynb"
LIMIT = 5  # seconds per question: the fixture's questions take milliseconds


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
    assert len(stub_nb["cells"]) == len(key_nb["cells"]) - 3
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
    "points do not add up": ("## Question q2", "(2 points;", "(5 points;",
                             r"cell 8 \(question q2\): header says 5"),
    "non-numeric points": ("# TEST q1 visible", "(points: 1)", "(points: one)", r"cell 6: bad points 'one'"),
    "negative points": ("# TEST q1 visible", "(points: 1)", "(points: -1)", r"cell 6: bad points '-1'"),
    "malformed test header": ("# TEST q1 visible", "visible", "public", r"cell 6: malformed test header"),
    "malformed answer header": ("# EXERCISE q2\ndef double", "# EXERCISE q2", "# EXERCISE Q2",
                                r"cell 9: malformed answer header '# EXERCISE Q2'"),
    "header without points": ("## Question q2", "(2 points; forbidden: eval, exec)", "", r"cell 8: write the header as"),
    "assert in a test cell": ("# TEST q2 visible", 'check("shift(double(1))", shift(double(1)), 12)',
                              "assert shift(double(1)) == 12", r"cell 11, line 2: test cells compare values with check"),
    "test cell without check": ("# TEST q2 visible", 'check("shift(double(1))", shift(double(1)), 12)', "shift(1)",
                                r"cell 11: a test cell needs at least one check"),
    "expected as a variable": ("# TEST q2 visible", 'check("shift(double(1))", shift(double(1)), 12)',
                               'e = 12\ncheck("s", shift(double(1)), e)', r"cell 11, line 3: write the expected value inline"),
    "key uses a forbidden name": ("## Question q4", "forbidden: norm", "forbidden: sqrt",
                                  r"question q4: the key itself uses forbidden sqrt \(cell 16, line 4\)"),
    "forbidden name not an identifier": ("## Question q4", "forbidden: norm", "forbidden: np.linalg.norm",
                                         r"cell 15: forbidden names must be identifiers"),
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
        "q4": (2, [("visible test 1", 1), ("hidden test 1", 1)]),
    }
    assert key.questions["q2"].answer_cells == [9, 10]
    assert {q: k.forbidden for q, k in key.questions.items()} == {"q1": [], "q2": ["eval", "exec"], "q3": [],
                                                                 "q4": ["norm"]}


def test_student_name_is_stable():
    assert student_name("subs/alice.ipynb") == "alice"
    assert student_name("subs/bob/ch03_exercises.ipynb") == "bob"
    assert student_name("subs/bob/ch03_exercises (1).ipynb") == "bob"  # a second download
    assert student_name("subs/bob/ch03_exercises-copy.ipynb") == "bob"
    assert student_name("subs/x/../carol/ch03_exercises.ipynb") == "carol"
    assert student_name("subs/dan\x07\n.ipynb") == "dan"  # no control characters


def test_csv_cells_are_never_formulas():
    assert csv_safe('=HYPERLINK("http://x","y")') == "'=HYPERLINK(\"http://x\",\"y\")"
    assert [csv_safe(s) for s in ("+1", "-1", "@SUM(A1)", "ok", "a\nb\tc")] == ["'+1", "'-1", "'@SUM(A1)", "ok", "a b c"]
    assert feedback_file_name("../../etc/passwd") == "_.._etc_passwd"
    assert feedback_file_name('=HYPERLINK("a","b")') == "_HYPERLINK__a___b__"


def test_student_test_source_drops_expected_values():
    src = '# TEST q1 hidden (points: 1)\nv = f(seed(1))\ncheck("a", g(v), ref(v), atol=1e-3)\ncheck("b", g(2), expected=ref(2))'
    out = student_test_source(src)
    assert "ref" not in out and "check('a', g(v), None, atol=0.001)" in out and "expected=None" in out


# ---------------------------------------------------------------- values and comparison


@pytest.mark.parametrize("got, expected, kind", [
    (3, 3.0, None), (0.1 + 0.2, 0.3, None), (float("nan"), float("nan"), None), (True, 1, "type"),
    ([1, [2, "x"]], (1, (2, "x")), None), ({"a": 1}, {"a": 1, "b": 2}, "keys"), ("a", "b", "value"),
    (np.arange(3), np.arange(3), None), (np.arange(3.0), np.arange(3), "dtype"), (np.zeros((2, 3)), np.zeros(6), "shape"),
    (np.array([1.0, 2.0001]), np.array([1.0, 2.0]), "value"), ({(1, 2): [3]}, {(1, 2): [3]}, None), (None, 0, "type"),
])
def test_compare_plain_values(got, expected, kind):
    problem = compare(decode(encode(got)), decode(encode(expected)))
    assert (problem.kind if problem else None) == kind, problem


def test_encode_round_trips_tensors_and_refuses_objects():
    torch = pytest.importorskip("torch")
    t = torch.arange(6, dtype=torch.bfloat16).view(2, 3)
    back = decode(encode({"t": t, "i": torch.tensor([1, 2]), "mask": torch.tensor([True, False]), "s": np.float32(2.5)}))
    assert back["t"].dtype == np.float32 and back["t"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert back["i"].dtype == np.int64 and back["mask"].dtype == np.bool_ and back["s"] == 2.5
    with pytest.raises(ValueFormatError, match="not plain data"):
        encode(object())


@pytest.mark.parametrize("data", [
    {"array": {"dtype": "object", "shape": [1], "data": ""}},  # no object arrays (no pickle)
    {"array": {"dtype": "float32", "shape": [4], "data": "AAAA"}},  # data does not match the shape
    {"array": {"dtype": "float32", "shape": [10 ** 9, 10 ** 9], "data": ""}},
    {"__reduce__": ["os.system", ["echo"]]}, {"dict": [[1]]}, {"dict": [[{"dict": []}, 1]]},
])
def test_decode_refuses_malformed_data(data):
    with pytest.raises(ValueFormatError):
        decode(data)


def test_decode_refuses_deep_nesting():
    deep = []
    for _ in range(100):
        deep = [deep]
    with pytest.raises(ValueFormatError, match="nested deeper"):
        decode(deep)


def test_check_in_a_notebook_asserts_locally():
    check("close enough", np.array([1.0, 2.0]), np.array([1.0, 2.0 + 1e-9]))
    with pytest.raises(AssertionError, match=r"^p=0.5: expected 0.5, got 0.4. use the cumulative sum$"):
        check("p=0.5", 0.4, 0.5, hint="use the cumulative sum")
    assert raises(int, "x") == "ValueError" and raises(int, "1") == "no exception" and seed(7) == 7


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
    # the output cap usually stops it; in a fresh clone under /tmp the 2-s clock came first (twice): both end the run
    ("while True:\n    print('x' * 1000)", (FLOOD, TIMEOUT)),
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


# ---------------------------------------------------------------- the sandbox


@pytest.fixture(scope="module")
def level():
    """The isolation the grader really gets here (CI runs as root: its own uid, usually namespaces too)."""
    from instructlib.grading.grader import _needed_paths, choose_sandbox

    base = tempfile.mkdtemp(prefix="instructlib-test-")  # not under pytest's private (0700) folder
    os.chmod(base, 0o711)
    try:
        return choose_sandbox("auto", sandbox.Limits(), [], _needed_paths(), base, print).level
    finally:
        shutil.rmtree(base, ignore_errors=True)


def needs_uid(level):
    if not level.uid:
        pytest.skip(f"the uid sandbox needs root: {level.reason}")


def _box(level, tmp_path, **limits):
    from instructlib.config import cache_dir
    from instructlib.grading.grader import _needed_paths

    return Sandbox(level, hide=[str(KEY_DIR)], limits=sandbox.Limits(**limits), cache=str(cache_dir()),
                   expose=_needed_paths())


def test_sandboxed_kernel_is_isolated(level, tmp_path, monkeypatch):
    needs_uid(level)
    monkeypatch.setenv("GRADER_SECRET_TOKEN", "do-not-leak")
    base = tempfile.mkdtemp(prefix="instructlib-test-")
    os.chmod(base, 0o711)
    pool = sandbox.UidPool(1)
    uid = pool.free[0]
    try:
        probe = ("import os, instructlib.grading.checks as c\nc._configure('student', 's')\n"
                 "def attempt(f):\n    try:\n        return f()\n    except Exception as e:\n        return type(e).__name__\n"
                 "check = c.check\ncheck('uid', os.getuid(), None)\ncheck('home', sorted(os.listdir(os.path.expanduser('~'))), None)\n"
                 "check('env', sorted(k for k in os.environ if 'SECRET' in k), None)\n"
                 f"check('key', attempt(lambda: open({str(KEY)!r}).read()[:20]), None)\n"
                 "check('daemon', __import__('subprocess').Popen(['sleep', '600'], start_new_session=True).pid > 0, None)\n"
                 "check('memory', attempt(lambda: len(bytearray(3 << 30))), None)")
        runs = run_cells([probe], timeout=30, sandbox=_box(level, tmp_path, memory_mb=1024), uid=uid, base_dir=base)
        got = {c["label"]: c["got"] for c in runs[0].checks}
        assert runs[0].status == OK, runs[0]
        assert got["uid"] == uid and got["env"] == [] and got["memory"] == "MemoryError"
        assert not [f for f in got["home"] if not f.startswith(".")], got["home"]  # only IPython's own dirs
        if level.namespaces:
            assert got["key"] in ("PermissionError", "FileNotFoundError", "IsADirectoryError"), got["key"]
        assert sandbox.pids_of_uid(uid) == []  # the daemon in its own session is gone too
    finally:
        pool.close()
        shutil.rmtree(base, ignore_errors=True)


def test_kill_uid_kills_every_process_of_the_uid(level):
    needs_uid(level)
    import subprocess

    pool = sandbox.UidPool(1)
    uid = pool.free[0]
    try:
        procs = [subprocess.Popen(["sleep", "600"], user=uid, group=uid, start_new_session=True) for _ in range(3)]
        os.kill(procs[0].pid, 19)  # a stopped one too (SIGSTOP)
        assert sorted(sandbox.pids_of_uid(uid)) == sorted(p.pid for p in procs)
        assert sandbox.kill_uid(uid) == []
        assert all(p.wait(timeout=10) == -9 for p in procs)
    finally:
        pool.close()


# ---------------------------------------------------------------- grader end to end: hostile and honest


def submission(stub_nb: dict, answers: dict[str, str], replace: dict[str, str] | None = None,
               extra_setup: str | None = None) -> str:
    """The student notebook with answer cells (and any other cell) replaced, plus an extra setup cell."""
    nb = copy.deepcopy(stub_nb)
    for q, code in answers.items():
        find(nb, f"# EXERCISE {q}")["source"] = f"# EXERCISE {q}\n{code}"
    for first_line, code in (replace or {}).items():
        find(nb, first_line)["source"] = code
    if extra_setup:
        cell = copy.deepcopy(find(nb, "import math"))
        cell["source"], cell["id"] = extra_setup, "attack"
        nb["cells"].insert(nb["cells"].index(find(nb, "import math")) + 1, cell)
    return notebook_json(nb)


ADD, SHIFT, ANSWER = "def add(a, b):\n    return a + b", "def shift(x):\n    return x + OFFSET", "ANSWER = 42"
UNIT = "def unit(v):\n    return v / np.sqrt((v ** 2).sum())"
FULL = {"q1": ADD, "q2": SHIFT, "q3": ANSWER, "q4": UNIT}
POINTS = {"q1": 3, "q2": 2, "q3": 1.5, "q4": 2}
DAEMON_MARK = "instructlib-hostile-daemon"
HIDDEN_TEXT = ("randint", "default_rng", "Random(seed", "random_vector".replace("_", " ") + "')")  # hidden test code


def attacks(paths: dict[str, Path]) -> dict[str, tuple]:
    """student -> (answers, cell replacements, extra setup code); attacks guarded to run only sandboxed."""
    leak = ("import os, sys, glob\nFOUND = []\n"
            "def _read(p):\n    try:\n        with open(p, errors='replace') as f:\n            return f.read()\n"
            "    except Exception:\n        return ''\n"
            f"if 'isqrt' in _read({str(paths['key'])!r}): FOUND.append('key')\n"
            f"if 'return a + b' in _read({str(paths['classmate'])!r}): FOUND.append('classmate')\n"
            f"if 'q1' in _read({str(paths['out'])!r}): FOUND.append('gradebook')\n"
            "for pid in os.listdir('/proc'):\n"
            "    if pid.isdigit() and pid != str(os.getpid()):\n"
            "        for part in ('cwd', 'root'):\n"
            "            try:\n"
            "                if any(n.endswith('.ipynb') for n in os.listdir(f'/proc/{pid}/{part}')): FOUND.append(pid)\n"
            "            except Exception:\n                pass\n"
            f"if glob.glob({str(paths['classmate'].parent)!r} + '/*'): FOUND.append('listing')\n")
    spy_code = ("def _cell():\n    return get_ipython().kernel.get_parent()['content']['code']\n"
                "class Spy(Exception):\n    pass\n")
    intrude = ("import os, signal, subprocess, sys, pathlib, site\n"
               "assert os.getuid() != 0, 'refusing to attack without a sandbox uid'\n"
               "for pid in os.listdir('/proc'):\n"
               "    if pid.isdigit() and int(pid) != os.getpid():\n"
               "        for sig in (signal.SIGSTOP, signal.SIGKILL):\n"
               "            try: os.kill(int(pid), sig)\n            except Exception: pass\n"
               "for target in (os.getppid(), 1):\n"
               "    for sig in (signal.SIGSTOP, signal.SIGKILL):\n"
               "        try: os.kill(target, sig)\n        except Exception: pass\n"
               f"daemon = '''import os, time\nos.umask(0)\nfor _ in range(600):\n"
               f"    for p in {[str(paths['out']), str(paths['feedback'] / 'alice.md')]!r}:\n"
               "        try: open(p, 'w').write('pwned')\n        except Exception: pass\n"
               "    time.sleep(0.1)\n'''\n"
               f"subprocess.Popen([sys.executable, '-c', daemon, {DAEMON_MARK!r}], start_new_session=True,\n"
               "                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
               "evil = \"import os\\nif os.environ.get('INSTRUCTLIB_SANDBOX'):\\n    "
               "get_ipython().input_transformers_cleanup.append(lambda lines: ['pass\\\\n'])\\n\"\n"
               "for d in (os.environ.get('IPYTHONDIR', ''), os.path.expanduser('~/.ipython'), '/root/.ipython', '/tmp/.ipython'):\n"
               "    try:\n        p = pathlib.Path(d, 'profile_default', 'startup')\n        p.mkdir(parents=True, exist_ok=True)\n"
               "        (p / '00-instructlib-hostile.py').write_text(evil)\n    except Exception: pass\n"
               "for d in [*site.getsitepackages(), os.environ.get('INSTRUCTLIB_CACHE', '')]:\n"
               "    try: pathlib.Path(d, 'sitecustomize.py').write_text(evil.replace('get_ipython()', 'None'))\n"
               "    except Exception: pass\n")
    return {
        # one-line bypasses: every later cell becomes `pass`, tracebacks and errors vanish
        "bypass": ({}, None, "get_ipython().input_transformers_cleanup.append(lambda lines: ['pass\\n'])"),
        "silencer": ({"q3": ANSWER}, None, "ip = get_ipython()\nip.showtraceback = lambda *a, **k: None\n"
                                           "ip.set_custom_exc((BaseException,), lambda *a, **k: None)"),
        # patched comparisons, magic objects, a forged check that sends back what it was given
        "patcher": ({"q1": "def add(a, b):\n    return Magic()", "q2": "def shift(x):\n    return Magic()",
                     "q3": ANSWER, "q4": "def unit(v):\n    return Magic()"}, None,
                    "import math, numpy\nimport instructlib.grading.checks as C\n"
                    "numpy.allclose = numpy.array_equal = math.isclose = lambda *a, **k: True\n"
                    "class Magic:\n    __eq__ = lambda self, other: True\n    __hash__ = object.__hash__\n"
                    "_send = C.check\nC.check = lambda label, got, expected, **kw: _send(label, expected, expected, **kw)\n"
                    "C.compare = lambda *a, **k: None"),
        # reading the key, a classmate, the gradebook, other processes; leaking hidden tests via feedback
        "spy": ({"q1": "def add(a, b):\n    raise ValueError(_cell())",
                 "q2": "def shift(x):\n    return x + OFFSET if FOUND else None", "q3": ANSWER,
                 "q4": "def unit(v):\n    raise type(''.join(c if c.isalnum() else '_' for c in _cell())[:80], (Spy,), {})()"},
                None, leak + spy_code),
        # killing siblings and the grader, daemons that outlive the kernel, startup files, sitecustomize
        "intruder": (FULL, None, intrude),
        "raiser": ({"q1": "def add(a, b):\n    raise ValueError('boom')", "q2": "import sys\nsys.exit(1)\n" + SHIFT,
                    "q3": ANSWER, "q4": "hog = []\nwhile True:\n    hog.append(bytearray(50_000_000))\n" + UNIT}, None, None),
        "crasher": ({"q1": "import os\nos._exit(1)", "q2": SHIFT, "q3": "print('x' * 10_000_000)\n" + ANSWER,
                     "q4": "import ctypes\nctypes.string_at(0)"}, None, None),
        "looper": ({"q1": ADD, "q2": "while True:\n    pass",
                    "q3": "from IPython.display import publish_display_data\nwhile True:\n"
                          "    publish_display_data({'text/plain': ''}, metadata={'m': 'y' * 100_000})",
                    "q4": "from IPython.display import display\nwhile True:\n"
                          "    display({'image/png': 'x' * 100_000}, raw=True)"}, None, None),
        "partial": ({"q1": "def add(a, b):\n    return abs(a) + abs(b)", "q2": "def shift(x):\n    return 0",
                     "q3": ANSWER, "q4": "def unit(v):\n    return v / v.sum()"},
                    {"# TEST q2 visible": "# TEST q2 visible (points: 2)\npass"}, None),
        "forbidden": ({"q1": ADD, "q2": "def shift(x):\n    return eval('x + OFFSET')", "q3": ANSWER,
                       "q4": "def unit(v):\n    return v / np.linalg.norm(v)"}, None, None),
    }


EXPECTED = {  # student -> {question: (points, words in the feedback)}
    "alice": {q: (POINTS[q], "all tests passed") for q in POINTS},
    "bob": {q: (POINTS[q], "all tests passed") for q in POINTS},
    "'=HYPERLINK(\"http:evil.example\",\"click\")": {q: (POINTS[q], "all tests passed") for q in POINTS},
    "stub": {"q1": (0, "NotImplementedError"), "q2": (0, "NotImplementedError"),
             "q3": (0, "answer cell 12 raised NotImplementedError"), "q4": (0, "NotImplementedError")},
    "bypass": {q: (0, "was not reached") for q in POINTS},
    "silencer": {"q1": (0, "was not reached"), "q2": (0, "was not reached"), "q3": (1.5, "all tests passed"),
                 "q4": (0, "was not reached")},
    "patcher": {"q1": (0, "not plain data"), "q2": (0, "not plain data"), "q3": (1.5, "all tests passed"),
                "q4": (0, "not plain data")},
    "spy": {"q1": (0, "visible test 1 failed (1 pts): raised ValueError"), "q2": (0, "expected a number, got None"),
            "q3": (1.5, "all tests passed"), "q4": (0, "raised an exception")},
    "intruder": {q: (POINTS[q], "all tests passed") for q in POINTS},
    "raiser": {"q1": (0, "ValueError: boom"), "q2": (0, "raised SystemExit: 1"), "q3": (1.5, "all tests passed"),
               "q4": (0, "MemoryError")},
    "crasher": {"q1": (0, "the kernel died"), "q2": (2, "all tests passed"), "q3": (0, "output limit"),
                "q4": (0, "the kernel died")},
    "looper": {"q1": (3, "all tests passed"), "q2": (0, f"time limit of {LIMIT} s exceeded in answer cell 9"),
               "q3": (0, "output limit"), "q4": (0, "output limit")},
    "partial": {"q1": (1, "hidden test 1 failed (2 pts): check 'integers': wrong value. negative numbers"),
                "q2": (0, "visible test 1 failed (2 pts): check 'shift(double(1))': expected 12, got 0"),
                "q3": (1.5, "all tests passed"), "q4": (0, "2 of 2 values differ")},
    "forbidden": {"q1": (3, "all tests passed"), "q2": (0, "uses `eval` (answer cell 9, line 3), which question q2 forbids"),
                  "q3": (1.5, "all tests passed"), "q4": (0, "uses `norm`")},
}
BROKEN = {"garbled": "not valid notebook JSON", "nometa": '"chapter": "NN"', "intsource": "cell 5: cell source is a list",
          "deep": "nested too deeply", "chapter98": "no key"}


def _uid_processes() -> list[str]:
    """Processes of any sandbox uid, or carrying the daemon's mark (there must be none after grading)."""
    found = []
    for pid in os.listdir("/proc"):
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
            status = open(f"/proc/{pid}/status").read()
        except OSError:
            continue
        uid = int(re.search(r"Uid:\s+(\d+)", status).group(1))
        if re.search(r"State:\s+Z", status):
            continue
        if uid in sandbox.UID_RANGE or DAEMON_MARK in cmd:
            found.append(f"{pid} uid {uid}: {cmd[:80]}")
    return found


@pytest.fixture(scope="module")
def gradebook(tmp_path_factory, stub_nb, level):
    """Grade honest, hostile and broken submissions in one CLI run with --jobs 2."""
    if not level.uid:
        pytest.skip(f"hostile submissions need the uid sandbox (root): {level.reason}; never run them unsandboxed")
    d = tmp_path_factory.mktemp("submissions")  # pytest's folders are private (0700): like an instructor's
    key_dir = d / "key"
    key_dir.mkdir()
    (key_dir / KEY.name).write_text(KEY.read_text())
    out, feedback = d / "grades.csv", d / "feedback"
    honest = submission(stub_nb, FULL)
    (d / "alice").mkdir()
    (d / "alice" / "ch99_exercises.ipynb").write_text(KEY.read_text())  # student name from the folder
    (d / "bob").mkdir()
    (d / "bob" / "ch99_exercises (1).ipynb").write_text(honest)  # a re-download keeps the folder's name
    (d / '=HYPERLINK("http:evil.example","click").ipynb').write_text(honest)
    (d / "stub.ipynb").write_text(notebook_json(stub_nb))
    paths = {"key": key_dir / KEY.name, "classmate": d / "bob" / "ch99_exercises (1).ipynb", "out": out,
             "feedback": feedback}
    for student, (answers, replace, extra) in attacks(paths).items():
        (d / f"{student}.ipynb").write_text(submission(stub_nb, answers, replace, extra))
    (d / "garbled.ipynb").write_text('{"cells": [')
    nometa = json.loads(honest)
    del nometa["metadata"]["instructlib"]
    (d / "nometa.ipynb").write_text(json.dumps(nometa))
    intsource = json.loads(honest)
    intsource["cells"][4]["source"] = ["x = 1\n", 7]
    (d / "intsource.ipynb").write_text(json.dumps(intsource))
    (d / "deep.ipynb").write_text('{"cells": [' + "[" * 200_000 + "]" * 200_000 + "]}")
    other = json.loads(honest)
    other["metadata"]["instructlib"]["chapter"] = "98"
    (d / "chapter98.ipynb").write_text(json.dumps(other))
    subs = sorted(p for p in d.rglob("*.ipynb") if p.parent != key_dir)
    argv = ["grade", *map(str, subs), "--out", str(out), "--key-dir", str(key_dir), "--timeout", str(LIMIT),
            "--max-output", "1000000", "--max-memory", "1024", "--feedback-dir", str(feedback), "--jobs", "2"]
    status = cli_main(argv)
    text = out.read_text()
    time.sleep(1.0)  # give any surviving daemon time to strike
    leftovers = _uid_processes()
    rows = list(csv.DictReader(open(out, newline="")))
    return {"status": status, "rows": rows, "text": text, "after": out.read_text(), "feedback": feedback,
            "leftovers": leftovers, "argv": argv, "dir": d, "key_dir": key_dir}


def test_gradebook_scores_every_student_and_question(gradebook):
    assert gradebook["status"] == 1  # some submissions could not be graded; no grader error
    got = {(r["student"], r["question"]): r for r in gradebook["rows"]}
    wrong = []
    for student, questions in EXPECTED.items():
        for q, (points, words) in questions.items():
            row = got.get((student, q))
            if row is None or float(row["points"]) != points or words not in row["feedback"]:
                wrong.append((student, q, points, words, row and (row["points"], row["feedback"])))
            else:
                assert row["chapter"] == "99" and float(row["max_points"]) == POINTS[q]
    assert not wrong, "\n".join(map(str, wrong))


def test_gradebook_is_complete_and_untouched(gradebook):
    rows = gradebook["rows"]
    students = {r["student"] for r in rows}
    assert students == set(EXPECTED) | set(BROKEN)
    assert len(rows) == 4 * len(EXPECTED) + len(BROKEN)  # one row for each unreadable notebook
    assert gradebook["after"] == gradebook["text"], "something rewrote the gradebook after the run"
    assert "pwned" not in (gradebook["feedback"] / "alice.md").read_text()


def test_nothing_the_attackers_started_is_left(gradebook):
    assert gradebook["leftovers"] == []
    for d in ("/root/.ipython", "/tmp/.ipython", os.path.expanduser("~/.ipython")):
        assert not list(Path(d).glob("profile_default/startup/00-instructlib-hostile.py"))
    import site

    assert not [p for p in site.getsitepackages() if (Path(p) / "sitecustomize.py").exists()
                and "INSTRUCTLIB_SANDBOX" in (Path(p) / "sitecustomize.py").read_text()]


def test_broken_submissions_cost_only_their_points(gradebook):
    by_student = {}
    for r in gradebook["rows"]:
        by_student.setdefault(r["student"], []).append(r)
    for student, words in BROKEN.items():
        assert all(r["points"] == "0" and words in r["feedback"] for r in by_student[student]), by_student[student]
    assert str(gradebook["dir"] / "intsource.ipynb") in by_student["intsource"][0]["feedback"]  # names the file


def test_hidden_tests_never_reach_the_feedback(gradebook, key_nb):
    hidden_lines = [line.strip() for c in key_nb["cells"] if "hidden" in source_of(c).split("\n", 1)[0]
                    for line in source_of(c).splitlines()[1:] if len(line.strip()) > 12]
    texts = [gradebook["text"], *(p.read_text() for p in gradebook["feedback"].iterdir())]
    for text in texts:
        for fragment in (*hidden_lines, *HIDDEN_TEXT):
            assert fragment not in text, fragment
        normalised = re.sub(r"[^a-z0-9]", "", text.lower())
        assert "randint" not in normalised and "defaultrng" not in normalised
    assert max(len(r["feedback"]) for r in gradebook["rows"]) <= 1600  # capped


def test_gradebook_is_formula_safe(gradebook):
    for r in gradebook["rows"]:
        assert all(not str(v).startswith(("=", "+", "-", "@")) for v in r.values()), r
    assert (gradebook["feedback"] / "_HYPERLINK__http_evil.example___click__.md").exists()


def test_feedback_files(gradebook):
    text = (gradebook["feedback"] / "partial.md").read_text()
    assert "Total: 2.5 / 8.5" in text and "## q1: 1 / 3" in text
    assert "note: this notebook is chapter 98" in (gradebook["feedback"] / "chapter98.md").read_text()


def test_rerun_skips_what_is_done(gradebook, capsys):
    before = Path(gradebook["argv"][gradebook["argv"].index("--out") + 1]).read_text()
    assert cli_main(gradebook["argv"]) == 0  # everything is already in the gradebook: nothing runs
    assert f"skipped {len(EXPECTED) + len(BROKEN)} submissions" in capsys.readouterr().out
    assert Path(gradebook["argv"][gradebook["argv"].index("--out") + 1]).read_text() == before


def test_resume_after_a_crash_regrades_only_the_torn_submission(tmp_path, stub_nb, level, capsys):
    out = tmp_path / "grades.csv"
    (tmp_path / "stub.ipynb").write_text(notebook_json(stub_nb))
    (tmp_path / "good.ipynb").write_text(submission(stub_nb, FULL))
    header = "student,chapter,question,points,max_points,feedback\n"
    done = "".join(f"stub,99,{q},0,{POINTS[q]:g},earlier run\n" for q in POINTS)
    out.write_text(header + done + "good,99,q1,3,3,all tests passed\ngood,99,q2,2,2,all te")  # killed mid-write
    argv = ["grade", str(tmp_path / "stub.ipynb"), str(tmp_path / "good.ipynb"), "--out", str(out),
            "--key-dir", str(KEY_DIR), "--timeout", str(LIMIT), "--jobs", "2"]
    assert cli_main(argv) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["feedback"] for r in rows if r["student"] == "stub"] == ["earlier run"] * 4  # not graded again
    assert [(r["question"], r["points"]) for r in rows if r["student"] == "good"] == [
        ("q1", "3"), ("q2", "2"), ("q3", "1.5"), ("q4", "2")]
    assert "skipped 1 submissions" in capsys.readouterr().out


def test_kernel_that_never_starts_is_a_grader_error(monkeypatch, tmp_path, stub_nb, capsys):
    """Not the student's fault: 0-point rows marked GRADER ERROR, exit 3, and a rerun grades them again."""
    from instructlib.grading import kernel

    real = kernel._run_once
    calls = []

    def flaky(cells, timeout, max_output, box, uid, startup_timeout, base_dir):
        if box is not None and any("def add" in c for c in cells):  # student kernels only
            calls.append(1)
            raise kernel.KernelStartError("zmq exploded")
        return real(cells, timeout, max_output, box, uid, startup_timeout, base_dir)

    monkeypatch.setattr(kernel, "_run_once", flaky)
    out = tmp_path / "g.csv"
    (tmp_path / "good.ipynb").write_text(submission(stub_nb, FULL))
    argv = ["grade", str(tmp_path / "good.ipynb"), "--out", str(out), "--key-dir", str(KEY_DIR), "--timeout", str(LIMIT)]
    assert cli_main(argv) == 3
    rows = {r["question"]: r for r in csv.DictReader(out.open())}
    assert rows["q1"]["feedback"].startswith("GRADER ERROR") and "zmq exploded" in rows["q1"]["feedback"]
    assert rows["q3"]["points"] == "1.5"  # q3's cells define no add: its kernel started
    assert len(calls) == kernel.START_ATTEMPTS  # retried, then given up
    assert "grader error: good q1: KernelStartError" in capsys.readouterr().err
    monkeypatch.setattr(kernel, "_run_once", real)
    assert cli_main(argv) == 0  # the rerun grades the submission again
    assert [(r["question"], r["points"]) for r in csv.DictReader(out.open())] == [
        ("q1", "3"), ("q2", "2"), ("q3", "1.5"), ("q4", "2")]


def test_broken_key_is_a_grader_error(tmp_path, key_nb, stub_nb):
    key_dir = tmp_path / "key"
    key_dir.mkdir()
    bad = _mutate(key_nb, "# TEST q3", "check(\"ANSWER\", ANSWER, 42)", "check(\"ANSWER\", ANSWER, 41)")
    (key_dir / KEY.name).write_text(notebook_json(bad))
    (tmp_path / "s.ipynb").write_text(submission(stub_nb, FULL))
    run = grade([tmp_path / "s.ipynb"], key_dir=key_dir, timeout=LIMIT, jobs=2)
    assert run.exit_code == 3 and "the key fails its own check 'ANSWER'" in run.errors[0]
    rows = {r.question: r for r in run.rows}
    assert rows["q3"].feedback.startswith("GRADER ERROR") and rows["q1"].points == 3


def test_old_format_key_is_rejected_with_a_clear_message(tmp_path, key_nb, stub_nb):
    key_dir = tmp_path / "key"
    key_dir.mkdir()
    old = _mutate(key_nb, "# TEST q3", "check(\"ANSWER\", ANSWER, 42)", "assert ANSWER == 42")
    (key_dir / KEY.name).write_text(notebook_json(old))
    (tmp_path / "s.ipynb").write_text(submission(stub_nb, FULL))
    run = grade([tmp_path / "s.ipynb"], key_dir=key_dir, timeout=LIMIT)
    assert run.exit_code == 3 and all(r.points == 0 for r in run.rows)
    assert "cell 14, line 2: test cells compare values with check" in run.rows[0].feedback


def test_duplicate_student_is_refused(tmp_path):
    for sub in ("a/x", "b/x"):
        (tmp_path / sub).mkdir(parents=True)
        (tmp_path / sub / "ch99_exercises.ipynb").write_text(KEY.read_text())
    assert cli_main(["grade", str(tmp_path / "a/x/ch99_exercises.ipynb"), str(tmp_path / "b/x/ch99_exercises.ipynb"),
                     "--out", str(tmp_path / "g.csv"), "--key-dir", str(KEY_DIR)]) == 2
    assert not (tmp_path / "g.csv").exists()


def test_grading_without_a_sandbox_still_works(tmp_path, stub_nb):
    """--isolation none (what a non-root machine gets): honest work is graded the same."""
    (tmp_path / "good.ipynb").write_text(submission(stub_nb, FULL))
    run = grade([tmp_path / "good.ipynb"], key_dir=KEY_DIR, timeout=LIMIT, isolation="none", jobs=2)
    assert run.exit_code == 0 and [r.points for r in run.rows] == [3, 2, 1.5, 2], run.rows
    assert "resource limits only" in run.sandbox
