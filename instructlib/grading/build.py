"""Exercises: generate the student notebooks ``exercises/chNN_exercises.ipynb`` from ``solutions/``.

Solution regions become ``raise NotImplementedError`` at the marker's indentation, hidden test
cells are dropped, outputs and execution artefacts are cleared; everything else is kept. The JSON
is written the way nbformat writes it (sorted keys, indent 1, sources as line lists), atomically,
so regenerating gives byte-identical files.
"""
from __future__ import annotations

import copy
import json
import textwrap
from pathlib import Path

from ..data.io import atomic_write_text
from .exercise import (TEST_RE, cell_role, first_line, parse_key, read_notebook, solution_regions,
                       source_of)

STUB = "raise NotImplementedError"
CELL_ARTEFACTS = ("execution", "ExecuteTime")  # timing metadata left by nbclient / extensions
NOTEBOOK_ARTEFACTS = ("widgets",)  # saved widget state is output, not content


def fill_solutions(source: str, blocks: list[str], where: str) -> str:
    """Replace the solution regions (markers included), in order, by ``blocks``, each indented at its marker.

    A block is written without indentation (it is dedented first); ValueError if the number of blocks
    is not the number of regions.
    """
    regions = solution_regions(source, where)
    if len(blocks) != len(regions):
        raise ValueError(f"{where}: {len(blocks)} answer block(s) for {len(regions)} solution region(s)")
    lines = source.splitlines(keepends=True)
    for (begin, end), block in reversed(list(zip(regions, blocks))):
        indent = lines[begin][: len(lines[begin]) - len(lines[begin].lstrip())]
        newline = "\n" if lines[end].endswith("\n") else ""
        body = textwrap.dedent(block).strip("\n").splitlines() or ["pass"]
        lines[begin:end + 1] = ["\n".join(indent + b if b.strip() else "" for b in body) + newline]
    return "".join(lines)


def strip_solutions(source: str, where: str) -> str:
    """Replace each ``### BEGIN SOLUTION`` .. ``### END SOLUTION`` region by an indented stub."""
    return fill_solutions(source, [STUB] * len(solution_regions(source, where)), where)


def build_exercise(nb: dict, path: str | Path = "<notebook>", answers: dict[str, list[str]] | None = None) -> dict:
    """The student version of a parsed-and-checked solutions notebook (a new dict).

    ``answers`` (question -> code blocks, one per solution region of its answer cells in cell order)
    fills those regions instead of the stub: a submission as a student would write it (used by
    tests/test_exercise_attacks.py). ValueError for an unknown question or a wrong number of blocks.
    """
    parsed = parse_key(nb, path)  # raises ExerciseFormatError naming the cell for malformed input
    answers = answers or {}
    if unknown := sorted(set(answers) - set(parsed.questions)):
        raise ValueError(f"{path}: no question {', '.join(unknown)} in this notebook")
    blocks_of: dict[int, list[str]] = {}  # cell number -> its blocks
    for q, given in answers.items():
        answer_cells = parsed.questions[q].answer_cells
        counts = [len(solution_regions(source_of(nb["cells"][i - 1]), f"{path}: cell {i}")) for i in answer_cells]
        if isinstance(given, str) or len(given) != sum(counts):
            raise ValueError(f"{path}: question {q}: {1 if isinstance(given, str) else len(given)} answer "
                             f"block(s) for its {sum(counts)} solution region(s) (one block per region, in cell order)")
        blocks = iter(given)
        for i, n in zip(answer_cells, counts):
            blocks_of[i] = [next(blocks) for _ in range(n)]
    out = copy.deepcopy(nb)
    for key in NOTEBOOK_ARTEFACTS:
        out.get("metadata", {}).pop(key, None)
    cells = []
    for i, cell in enumerate(out["cells"], start=1):
        role, _ = cell_role(cell)
        if role == "test" and TEST_RE.fullmatch(first_line(source_of(cell))).group(2) == "hidden":
            continue
        if role == "answer" and i in blocks_of:
            cell["source"] = fill_solutions(source_of(cell), blocks_of[i], f"{path}: cell {i}")
        elif role == "answer":
            cell["source"] = strip_solutions(source_of(cell), f"{path}: cell {i}")
        if cell.get("cell_type") == "code":
            cell["outputs"], cell["execution_count"] = [], None
        for key in CELL_ARTEFACTS:
            cell.get("metadata", {}).pop(key, None)
        cells.append(cell)
    out["cells"] = cells
    return out


def notebook_json(nb: dict) -> str:
    """Serialise like ``nbformat.writes``: sorted keys, indent 1, multi-line sources as lists."""
    nb = copy.deepcopy(nb)
    for cell in nb.get("cells", []):
        cell["source"] = source_of(cell).splitlines(keepends=True)
    return json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False, separators=(",", ": ")) + "\n"


def build_exercises(solutions_dir: str | Path, exercises_dir: str | Path) -> list[Path]:
    """Write ``exercises_dir/chNN_exercises.ipynb`` for every solutions notebook; return the paths.

    Every notebook is checked before anything is written, so malformed input changes nothing.
    """
    solutions_dir, exercises_dir = Path(solutions_dir), Path(exercises_dir)
    sources = sorted(solutions_dir.glob("ch[0-9][0-9]_exercises.ipynb"))
    if not sources:
        raise FileNotFoundError(f"{solutions_dir}: no chNN_exercises.ipynb notebooks")
    built = {exercises_dir / src.name: notebook_json(build_exercise(read_notebook(src), src))
             for src in sources}
    exercises_dir.mkdir(parents=True, exist_ok=True)
    for target, text in built.items():
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            atomic_write_text(target, [text])
    return list(built)
