"""The hand-written seed set: size, coverage, schema, quality and the loader's filters."""
import json
import re
from collections import Counter
from importlib import resources

import pytest
from rapidfuzz import fuzz

from instructlib.data.quality import REFERS_TO_INPUT, lint_tasks
from instructlib.data.records import SEED_KEYS, Task
from instructlib.data.seeds import (LANGUAGES, label_set, load_seed_tasks, seed_categories,
                                    seed_statistics)

CJK = re.compile(r"[\u3400-\u9fff]")
BLACKLIST = ("image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map",
             "maps", "draw", "plot", "plots", "go to", "video", "audio", "music", "flowchart",
             "diagram", "diagrams")  # Self-Instruct's keyword filter
TASKS = load_seed_tasks()


def test_raw_file_is_valid_seed_jsonl():
    text = (resources.files("instructlib.data") / "seed_tasks" / "seed_tasks.jsonl").read_text("utf-8")
    lines = text.splitlines()
    assert len(lines) == len(TASKS)
    for k, line in enumerate(lines):
        obj = json.loads(line)
        assert list(obj) == list(SEED_KEYS) + ["category", "language", "source"], k
        assert obj["id"] == f"seed_task_{k}" and obj["source"] == "instructlib"


def test_size_and_coverage():
    assert len(TASKS) >= 120
    assert len(seed_categories()) >= 12
    langs = Counter(t.language for t in TASKS)
    assert set(langs) == set(LANGUAGES) and langs["zh"] >= 30
    for cat in seed_categories():  # every category has tasks in both languages
        assert {t.language for t in TASKS if t.category == cat} == set(LANGUAGES), cat


def test_every_task_is_complete_and_unique():
    assert all(isinstance(t, Task) and t.instances for t in TASKS)
    for field in ("id", "name", "instruction"):
        values = [getattr(t, field).strip().lower() for t in TASKS]
        assert len(set(values)) == len(values), Counter(values).most_common(1)
    for t in TASKS:
        assert all(i.output.strip() for i in t.instances), t.id
        has_input = [bool(i.input.strip()) for i in t.instances]
        assert len(set(has_input)) == 1, f"{t.id}: inputs in some instances only"
        if REFERS_TO_INPUT.search(t.instruction):
            assert all(has_input), f"{t.id}: instruction mentions an input that is missing"
        assert len({(i.input, i.output) for i in t.instances}) == len(t.instances), t.id


def test_language_matches_text():
    for t in TASKS:
        if t.language == "zh":
            assert CJK.search(t.instruction), t.id
        else:
            assert t.instruction.isascii(), t.id


def test_translation_in_both_directions():
    pairs = [(bool(CJK.search(i.input)), bool(CJK.search(i.output)))
             for t in TASKS if t.category == "translation" for i in t.instances]
    assert (False, True) in pairs and (True, False) in pairs
    for lang in LANGUAGES:
        assert any(t.category == "translation" for t in load_seed_tasks(language=lang))


def test_classification_labels_are_consistent():
    cls = [t for t in TASKS if t.is_classification]
    assert len(cls) >= 8 and sum(t.language == "zh" for t in cls) >= 3
    for t in cls:
        labels = label_set(t)
        assert len(t.instances) >= 3 and len(labels) >= 2, t.id
        for label in labels:  # the instruction names the label set, so prompts can list it
            assert label in t.instruction, f"{t.id}: label {label!r} not named in the instruction"
    with pytest.raises(ValueError, match="not a classification"):
        label_set(next(t for t in TASKS if not t.is_classification))


def test_no_near_duplicate_instructions_and_varied_verbs():
    norm = [t.instruction.lower() for t in TASKS]
    for j in range(len(norm)):
        for i in range(j):
            assert fuzz.ratio(norm[i], norm[j]) < 70, (TASKS[i].id, TASKS[j].id)
    first_words = Counter(t.instruction.split()[0].lower() for t in TASKS if t.language == "en")
    assert len(first_words) >= 40 and first_words.most_common(1)[0][1] <= 10


def test_english_instructions_avoid_self_instruct_blacklist():
    for t in TASKS:
        if t.language == "en":
            low = t.instruction.lower()
            assert not [w for w in BLACKLIST if re.search(rf"\b{w}\b", low)], t.id


def test_passes_project_linter_without_any_issue():
    assert [str(i) for i in lint_tasks(TASKS)] == []


def test_filters_and_statistics():
    stats = seed_statistics()
    assert stats["tasks"] == len(TASKS) and stats["categories"] == len(seed_categories())
    assert stats["instances"] == sum(len(t.instances) for t in TASKS)
    assert sum(stats["by_language"].values()) == len(TASKS)
    assert sum(stats["by_category"].values()) == len(TASKS)
    zh_code = load_seed_tasks(language="zh", category="code")
    assert zh_code and len(zh_code) == stats["by_category_language"]["code"]["zh"]
    assert all(t.language == "zh" and t.category == "code" for t in zh_code)
    assert len(load_seed_tasks(language="en")) == stats["by_language"]["en"]
    with pytest.raises(ValueError, match="language"):
        load_seed_tasks(language="fr")
    with pytest.raises(ValueError, match="category"):
        load_seed_tasks(category="poetry")
