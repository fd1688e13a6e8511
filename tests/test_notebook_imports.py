"""Notebooks name only modules that exist, and import nothing from a later chapter.

A module's chapter is the one its docstring names ("Chapter NN: ..."). A notebook may mention later
chapters' modules in prose (chapter 00's map does), but its code imports only modules of its own
chapter or an earlier one: a learner reading chapter 07 should not need chapter 10's deploy code.
``KNOWN`` lists the imports that still break the rule, each with why; the test fails on any new
one, and on a listed one that is gone (so the list stays true).
"""
from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
IMPORT = re.compile(r"^\s*(?:from (instructlib[\w.]*) import|import (instructlib[\w.]*))", re.M)
NAMED = re.compile(r"`(instructlib(?:\.\w+)+)")
KNOWN = {
    ("03_pretraining_tiny_gpt.ipynb", "instructlib.evaluation.bootstrap"):
        "mean_over_seeds for the causal-vs-masked comparison; chapter 09 builds it",
    ("04_instructions_by_hand.ipynb", "instructlib.data.collate"):
        "a preview of chapter 05's training encoding",
}


def _module_chapter(name: str) -> int | None:
    """The chapter a module's docstring names; None if ``name`` is not an importable module."""
    try:
        spec = importlib.util.find_spec(name)
    except ModuleNotFoundError:
        return None
    if spec is None or spec.origin is None:
        return None
    doc = ast.get_docstring(ast.parse(Path(spec.origin).read_text(encoding="utf-8"))) or ""
    match = re.match(r"Chapter (\d\d)", doc)
    return int(match.group(1)) if match else -1


def _named(name: str) -> bool:
    """``name`` is a module, or an attribute of one (``instructlib.stats.cluster_bootstrap``)."""
    module, _, attr = name.rpartition(".")
    if _module_chapter(name) is not None:
        return True
    if module and _module_chapter(module) is not None:
        return hasattr(importlib.import_module(module), attr)
    return False


def _later_imports(path: Path) -> set[tuple[str, str]]:
    chapter = int(path.name[:2])
    found = set()
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        for match in IMPORT.finditer(cell.source):
            module = match.group(1) or match.group(2)
            owner = _module_chapter(module)
            if owner is not None and owner > chapter:
                found.add((path.name, module))
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_named_module_exists(path):
    missing = []
    for cell in nbformat.read(path, as_version=4).cells:
        names = set(NAMED.findall(cell.source)) | {m.group(1) or m.group(2) for m in IMPORT.finditer(cell.source)}
        missing += sorted(n for n in names if not _named(n))
    assert not missing, f"{path.name} names modules that do not import: {missing}"


def test_no_notebook_imports_a_later_chapter():
    found = set().union(*(_later_imports(p) for p in NOTEBOOKS))
    new = sorted(found - set(KNOWN))
    gone = sorted(set(KNOWN) - found)
    assert not new, f"imports of a later chapter's module (move the code down, or down the docstring's chapter): {new}"
    assert not gone, f"KNOWN lists imports that are gone; delete them from the list: {gone}"


def test_the_checks_can_fail():
    assert _module_chapter("instructlib.deploy.server") == 10
    assert _module_chapter("instructlib.eval") is None and not _named("instructlib.eval")
    assert _named("instructlib.stats.cluster_bootstrap") and not _named("instructlib.stats.no_such_function")
