"""What a reader sees: instructlib.polish on made-up notebooks, nbval honouring the tags it writes,
the CJK font for plots, and the committed notebooks/, solutions/ and exercises/ themselves.

LEAD, before the final `make test`: the committed-notebook checks at the bottom fail for every
notebook that was executed by an older `course run` (or edited by hand) since. Run

    .venv/bin/python -m instructlib.course polish notebooks/*.ipynb solutions/*.ipynb
    .venv/bin/python -m instructlib.cli build-exercises solutions exercises

and commit the result (`course polish --check ...` lists what still needs it, exit 1).
"""
from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import nbformat
import pytest

from instructlib import course
from instructlib.course import SETUP_CELL
from instructlib.polish import (KERNELSPEC, WIDGET_STATE, WIDGET_VIEW, path_rewriter, polish_file,
                                polish_notebook, tqdm_text)

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SOLUTIONS = sorted((ROOT / "solutions").glob("ch[0-9][0-9]_exercises.ipynb"))
EXERCISES = sorted((ROOT / "exercises").glob("ch[0-9][0-9]_exercises.ipynb"))
ALL = NOTEBOOKS + SOLUTIONS + EXERCISES
FIX = ("run `python -m instructlib.course polish notebooks/*.ipynb solutions/*.ipynb` and "
       "`python -m instructlib.cli build-exercises solutions exercises`")


def _tqdm_widget(state: dict, model_id: str, desc: str, n: int, total: int, tail: str) -> dict:
    """Add the HBox tqdm.notebook saves to widget ``state``; return the output that shows it."""
    ids = [f"{model_id}-{k}" for k in ("l", "b", "r")]
    state[model_id] = {"model_name": "HBoxModel", "state": {"children": [f"IPY_MODEL_{i}" for i in ids]}}
    state[ids[0]] = {"model_name": "HTMLModel", "state": {"value": f"{desc}:\u2007{100 * n // total}%"}}
    state[ids[1]] = {"model_name": "FloatProgressModel", "state": {"value": float(n), "max": float(total)}}
    state[ids[2]] = {"model_name": "HTMLModel", "state": {"value": f"\u2007{n}/{total}\u2007{tail}"}}
    return nbformat.v4.new_output("display_data", data={
        WIDGET_VIEW: {"model_id": model_id, "version_major": 2, "version_minor": 0},
        "text/plain": f"{desc}:   0%|          | 0/{total} [00:00<?, ?it/s]"})


def _executed_notebook(root: Path) -> nbformat.NotebookNode:
    state: dict = {}
    bars = [_tqdm_widget(state, "aa11", "pretraining", 800, 800, "[02:51&lt;00:00,\u20074.67it/s]"),
            _tqdm_widget(state, "bb22", "early stop", 450, 1000, "[00:10&lt;00:12,\u200745.0it/s]")]
    code = nbformat.v4.new_code_cell
    cells = [
        nbformat.v4.new_markdown_cell("# Chapter 99 — Test\n\n## Learning objectives\n- none"),
        code("# Setup. An older setup cell\nimport sys", execution_count=1),
        code("# NBVAL_CHECK_OUTPUT\nprint(2 + 2)", execution_count=2,
             outputs=[nbformat.v4.new_output("stream", name="stdout", text="4\n")]),
        code("x = 1\n# NBVAL_IGNORE_OUTPUT\nprint(x)", execution_count=3),
        code("train()", execution_count=4, outputs=bars + [
            nbformat.v4.new_output("stream", name="stderr", text=(
                f"{root}/.venv/lib/python3.11/site-packages/foo/bar.py:12: DeprecationWarning: old\n"
                "  warnings.warn('old')\n"
                "[transformers] `loss_type=None` was set in the config but it is unrecognized. Using the "
                "default loss: `ForCausalLMLoss`.\n"
                "[IPKernelApp] WARNING | Kernel is running over TCP without encryption. All communication "
                "(including code and outputs) is sent in plain text.\n"
                f"{root}/.venv/lib/python3.11/site-packages/foo/plot.py:3: UserWarning: a real warning\n"
                "  plt.show()\n")),
            nbformat.v4.new_output("stream", name="stderr", text="warn.py:1: FutureWarning: soon\n"),
            nbformat.v4.new_output("stream", name="stdout", text=(
                f"wrote {root}/notebooks/out.jsonl and /tmp/ch08-x1y2z3/self_instruct.jsonl\n"
                "cache: /root/.cache/instructlib and /home/alice/.cache/instructlib\n"
                "\rstep   0%|  | 0/3\rstep 100%|##| 3/3\n")),
            nbformat.v4.new_output("execute_result", execution_count=4,
                                   data={"text/plain": f"PosixPath('{root}/data/x.json')"})]),
    ]
    for cell in cells:
        cell.metadata["execution"] = {"iopub.status.idle": "2026-11-30T20:00:00Z"}
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["widgets"] = {WIDGET_STATE: {"state": state, "version_major": 2, "version_minor": 0}}
    return nb


def test_tqdm_widget_becomes_its_final_text(tmp_path):
    nb = _executed_notebook(tmp_path)
    state = nb.metadata["widgets"][WIDGET_STATE]["state"]
    assert tqdm_text(state, "aa11") == "pretraining: 100%|██████████| 800/800 [02:51<00:00, 4.67it/s]"
    assert tqdm_text(state, "bb22") == "early stop: 45%|████      | 450/1000 [00:10<00:12, 45.0it/s]"
    assert tqdm_text(state, "missing") is None
    polish_notebook(nb, root=tmp_path)
    outs = nb.cells[4].outputs
    assert [o["data"]["text/plain"] for o in outs[:2]] == [
        "pretraining: 100%|██████████| 800/800 [02:51<00:00, 4.67it/s]",
        "early stop: 45%|████      | 450/1000 [00:10<00:12, 45.0it/s]"]
    assert not any(WIDGET_VIEW in o.get("data", {}) for o in outs) and "widgets" not in nb.metadata


def test_a_widget_without_saved_state_is_left_alone(tmp_path):
    nb = _executed_notebook(tmp_path)
    del nb.metadata["widgets"][WIDGET_STATE]["state"]["bb22"]
    polish_notebook(nb, root=tmp_path)
    assert WIDGET_VIEW in nb.cells[4].outputs[1]["data"] and "widgets" in nb.metadata


def test_markers_become_tags_and_leave_the_code(tmp_path):
    nb = _executed_notebook(tmp_path)
    polish_notebook(nb, root=tmp_path)
    assert nb.cells[2].source == "print(2 + 2)" and nb.cells[2].metadata["tags"] == ["nbval-check-output"]
    assert nb.cells[3].source == "x = 1\nprint(x)" and nb.cells[3].metadata["tags"] == ["nbval-ignore-output"]
    assert "tags" not in nb.cells[4].metadata
    assert not any("execution" in c.metadata for c in nb.cells)


def test_noise_paths_and_carriage_returns(tmp_path):
    nb = _executed_notebook(tmp_path)
    polish_notebook(nb, root=tmp_path)
    texts = [o.get("text", o.get("data", {}).get("text/plain")) for o in nb.cells[4].outputs[2:]]
    assert texts == [
        "site-packages/foo/plot.py:3: UserWarning: a real warning\n  plt.show()\n",  # kept, path cut
        "wrote notebooks/out.jsonl and <tmp>/self_instruct.jsonl\n"
        "cache: ~/.cache/instructlib and ~/.cache/instructlib\n"
        "step 100%|##| 3/3\n",
        "PosixPath('data/x.json')",
    ]  # the deprecation, the transformers notice and the all-noise FutureWarning output are gone


def test_path_rewriter_keeps_relative_and_url_paths(tmp_path):
    rewrite = path_rewriter(tmp_path / "main")
    assert rewrite(f"{tmp_path}/main/notebooks/x and {tmp_path}/shared/seeds/a.md") == "notebooks/x and ../shared/seeds/a.md"
    same = "notebooks/x.ipynb https://example.org/tmp/a ./tmp/b ~/c"
    assert rewrite(same) == same



def test_path_rewriter_for_a_clone_directly_in_tmp():
    """A checkout at /tmp/fresh: other temporary paths stay <tmp>, never ../ (the parent is /tmp itself)."""
    rewrite = path_rewriter(Path("/tmp/fresh"))
    assert rewrite("/tmp/fresh/notebooks/x /tmp/pytest-of-root/pytest-1/t0 /root/.cache/m") == \
        "notebooks/x <tmp>/pytest-1/t0 ~/.cache/m"

def test_metadata_setup_cell_and_idempotence(tmp_path):
    nb = _executed_notebook(tmp_path)
    changed = polish_notebook(nb, root=tmp_path, setup_cell=SETUP_CELL)
    assert "setup cell updated" in changed and nb.cells[1].source == SETUP_CELL
    assert nb.metadata["kernelspec"] == KERNELSPEC and nb.metadata["language_info"]["name"] == "python"
    once = copy.deepcopy(nb)
    assert polish_notebook(nb, root=tmp_path, setup_cell=SETUP_CELL) == [] and nb == once
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    before = path.read_bytes()
    assert polish_file(path, root=tmp_path, setup_cell=SETUP_CELL) == [] and path.read_bytes() == before


def test_polish_command_check_and_bad_input(tmp_path, capsys):
    path = tmp_path / "nb.ipynb"
    nbformat.write(_executed_notebook(tmp_path), path)
    assert course.main(["polish", "--check", str(path)]) == 1 and "needs" in capsys.readouterr().out
    assert course.main(["polish", str(path)]) == 0
    assert course.main(["polish", "--check", str(path)]) == 0
    assert "already polished" in capsys.readouterr().out
    (tmp_path / "bad.ipynb").write_text("{not json")
    assert course.main(["polish", str(tmp_path / "bad.ipynb")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{tmp_path / 'bad.ipynb'}: error:") and "Traceback" not in err


# -- nbval honours the tags the polish writes (nbval 0.11: metadata_tags = nbval-check-output, ...) --

def _run_nbval(tmp_path: Path, tags: list[str]) -> subprocess.CompletedProcess:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "print(2 + 2)", execution_count=1, metadata={"tags": tags},
        outputs=[nbformat.v4.new_output("stream", name="stdout", text="5\n")])])  # a wrong committed output
    path = tmp_path / f"nb_{'_'.join(tags) or 'untagged'}.ipynb"
    nbformat.write(nb, path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                           "--nbval-current-env", str(path)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)


def test_nbval_checks_a_tagged_cell_and_is_lax_on_an_untagged_one(tmp_path):
    tagged = _run_nbval(tmp_path, ["nbval-check-output"])
    assert tagged.returncode == 1 and "1 failed" in tagged.stdout, tagged.stdout[-2000:]
    untagged = _run_nbval(tmp_path, [])
    assert untagged.returncode == 0 and "1 passed" in untagged.stdout, untagged.stdout[-2000:]


# -- Chinese in plots --

def _draw_chinese() -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.set_title("过滤后保留的指令 kept")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig.canvas.draw()
    plt.close(fig)
    return [str(w.message) for w in caught if "missing from font" in str(w.message)]


@pytest.fixture
def fresh_font_settings():
    import matplotlib

    saved = matplotlib.rcParams["font.family"]
    course._cjk_state.clear()
    yield
    matplotlib.rcParams["font.family"] = saved
    course._cjk_state.clear()


def test_shipped_font_draws_chinese(fresh_font_settings):
    assert course.SHIPPED_CJK_FONT.is_file() and (course.SHIPPED_CJK_FONT.parent / "OFL.txt").is_file()
    family = course.select_cjk_font(installed=False)
    assert family == "Instructlib Sans CJK SC"
    assert _draw_chinese() == []


def test_no_font_warns_once_with_the_fix(fresh_font_settings):
    with pytest.warns(UserWarning, match="apt-get install fonts-noto-cjk") as caught:
        assert course.select_cjk_font(installed=False, shipped=None) is None
        assert course.select_cjk_font(installed=False, shipped=None) is None
    assert len([w for w in caught if "中文" in str(w.message)]) == 1


def test_setup_notebook_waits_for_matplotlib(tmp_path):
    """In a fresh interpreter setup_notebook() imports nothing heavy; the font is chosen on import."""
    code = ("import sys; from instructlib.course import setup_notebook, _cjk_state; setup_notebook(); "
            "assert 'matplotlib' not in sys.modules; import matplotlib; "
            "print(_cjk_state.get('family')); print(matplotlib.rcParams['font.family'][-1])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1", "MPLCONFIGDIR": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    family, last = out.stdout.splitlines()
    assert family == last and family in (*course.CJK_FONTS, "Instructlib Sans CJK SC"), out.stdout


# -- the committed notebooks (see the module docstring: the lead polishes them all at the end) --

def _id(path):
    return f"{path.parent.name}/{path.name}"


UNFINISHED = re.compile(r"(^|\s)0%\|[^\n]*\|\s*0/[1-9]\d*\b")
ABSOLUTE = re.compile(r"(?<![\w.~<])/(home/[^\s/'\"]+|root|work|tmp|Users/[^\s/'\"]+)/")


def _texts(nb: dict):
    for i, cell in enumerate(nb["cells"], start=1):
        for out in cell.get("outputs", []):
            if "text" in out:
                yield i, "".join(out["text"]) if isinstance(out["text"], list) else out["text"]
            for mime in ("text/plain", "text/html", "text/markdown"):
                if mime in out.get("data", {}):
                    value = out["data"][mime]
                    yield i, "".join(value) if isinstance(value, list) else value


@pytest.mark.parametrize("path", ALL, ids=_id)
def test_committed_notebook_is_polished(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    problems = []
    for i, text in _texts(nb):
        if UNFINISHED.search(text):
            problems.append(f"cell {i}: an unfinished progress bar: {UNFINISHED.search(text).group(0).strip()!r}")
        if ABSOLUTE.search(text):
            problems.append(f"cell {i}: an absolute path of the machine: {ABSOLUTE.search(text).group(0)!r}")
    for i, cell in enumerate(nb["cells"], start=1):
        if cell["cell_type"] == "code" and re.search(r"^\s*#\s*(NBVAL|PYTEST_VALIDATE)_", "".join(cell["source"]), re.M):
            problems.append(f"cell {i}: a # NBVAL_ comment (use the cell tag)")
        if any(WIDGET_VIEW in o.get("data", {}) for o in cell.get("outputs", [])):
            problems.append(f"cell {i}: a widget output (untrusted viewers show its first state)")
    if nb["metadata"].get("kernelspec") != KERNELSPEC:
        problems.append(f"kernelspec is {nb['metadata'].get('kernelspec')}, not {KERNELSPEC}")
    assert not problems, f"{_id(path)} is not polished ({FIX}):\n" + "\n".join(problems)


def test_the_font_is_package_data():
    """A plain `pip install` (Colab) must carry the font: pyproject's package-data names it."""
    import tomllib

    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "fonts/*.otf" in data.get("instructlib", []) and "fonts/*.txt" in data.get("instructlib", [])
