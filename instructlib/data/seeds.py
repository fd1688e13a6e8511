"""Chapter 04: the course's hand-written seed tasks (package data), with filters and statistics.

``seed_tasks/seed_tasks.jsonl`` holds tasks in the Self-Instruct seed format plus the course keys
``category``, ``language`` ("en"/"zh") and ``source``; ``seed_tasks/README.md`` says where they come
from. They are read through ``importlib.resources`` so a non-editable install (Colab) finds them.
"""
from __future__ import annotations

from collections import Counter
from importlib import resources
from typing import Optional

from .io import load_tasks
from .records import Task

SEED_FILE = "seed_tasks.jsonl"
LANGUAGES = ("en", "zh")


def load_seed_tasks(language: Optional[str] = None, category: Optional[str] = None) -> list[Task]:
    """The seed tasks in file order, optionally only one language and/or one category."""
    if language is not None and language not in LANGUAGES:
        raise ValueError(f"language={language!r} is not one of {LANGUAGES}")
    with resources.as_file(resources.files("instructlib.data") / "seed_tasks" / SEED_FILE) as path:
        tasks = load_tasks(path)
    if category is not None:
        known = sorted({t.category for t in tasks})
        if category not in known:
            raise ValueError(f"category={category!r} is not one of {known}")
    return [t for t in tasks
            if (language is None or t.language == language)
            and (category is None or t.category == category)]


def seed_categories() -> list[str]:
    """The categories of the seed set, sorted."""
    return sorted({t.category for t in load_seed_tasks()})


def label_set(task: Task) -> list[str]:
    """The labels of a classification task: its distinct outputs, in order of first appearance."""
    if not task.is_classification:
        raise ValueError(f"task {task.id or task.name!r} is not a classification task")
    return list(dict.fromkeys(i.output.strip() for i in task.instances))


def seed_statistics() -> dict:
    """Counts of the seed set: tasks, instances, per language, per category (and per language)."""
    tasks = load_seed_tasks()
    by_cat: dict[str, dict[str, int]] = {}
    for t in tasks:
        row = by_cat.setdefault(t.category, {lang: 0 for lang in LANGUAGES})
        row[t.language] += 1
    return {
        "tasks": len(tasks),
        "instances": sum(len(t.instances) for t in tasks),
        "categories": len(by_cat),
        "classification_tasks": sum(t.is_classification for t in tasks),
        "tasks_with_input": sum(any(i.input.strip() for i in t.instances) for t in tasks),
        "by_language": dict(Counter(t.language for t in tasks)),
        "by_category": {c: sum(v.values()) for c, v in sorted(by_cat.items())},
        "by_category_language": dict(sorted(by_cat.items())),
    }
