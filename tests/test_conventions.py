"""Every notebook follows CONTRIBUTING.md: badge, setup cell, configuration, report, summary, glossary."""
import re
from pathlib import Path

import nbformat
import pytest

from instructlib.course import RESULTS_MIME, SETUP_CELL, colab_badge

ROOT = Path(__file__).resolve().parent.parent
LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SOLUTIONS = sorted((ROOT / "solutions").glob("ch[0-9][0-9]_exercises.ipynb"))


def _id(path):
    return f"{path.parent.name}/{path.name}"


def test_chapters_are_numbered_consecutively():
    numbers = [int(p.name[:2]) for p in LESSONS]
    assert numbers == list(range(len(numbers))) and numbers, numbers


@pytest.mark.parametrize("path", LESSONS + SOLUTIONS, ids=_id)
def test_header_badge_and_setup(path):
    nb = nbformat.read(path, as_version=4)
    first, setup = nb.cells[0], nb.cells[1]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    badge_path = f"exercises/{path.name}" if path.parent.name == "solutions" else f"notebooks/{path.name}"
    assert colab_badge(badge_path) in first.source, "wrong or missing Colab badge"
    assert "objectives" in first.source.lower()
    assert setup.cell_type == "code" and setup.source.strip() == SETUP_CELL.strip(), (
        "cell 2 is not the current setup cell: `python -m instructlib.course polish "
        f"{path.parent.name}/{path.name}` updates it (and `course run` does it before executing)")
    assert "get_profile()" in nb.cells[2].source, "cell 3 is the configuration cell"


@pytest.mark.parametrize("path", LESSONS + SOLUTIONS, ids=_id)
def test_executed_with_outputs_and_glossary(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), "commit notebooks executed top to bottom"
    counts = [c.execution_count for c in code]
    assert counts == sorted(counts), "cells were not executed in order"
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "中文" in text, "a 中文 glossary is expected at the end"
    assert not any(o.get("output_type") == "error" for c in code for o in c.get("outputs", []))


@pytest.mark.parametrize("path", LESSONS, ids=_id)
def test_lesson_reports_results_and_points_to_exercises(path):
    nb = nbformat.read(path, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert any(RESULTS_MIME in o.get("data", {}) for o in outputs), "call instructlib.course.report(...)"
    if int(path.name[:2]) > 0:
        tail = "\n".join(c.source for c in nb.cells[-3:])
        assert re.search(r"exercises/ch\d\d_exercises\.ipynb", tail)
