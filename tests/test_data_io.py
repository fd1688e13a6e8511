"""Data model, JSON/JSONL I/O, atomic writes and format round trips (chapter 04)."""
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from instructlib.data import (DataError, Instance, Record, Task, from_alpaca, from_dataset, from_messages,
                              load_records, load_tasks, read_json, read_jsonl, to_alpaca, to_dataset,
                              to_messages, write_json, write_jsonl)
from instructlib.data.formats import from_seed, records_to_tasks, to_seed

# Lines in the exact layout of Self-Instruct's data/seed_tasks.jsonl (json.dumps defaults, key order).
SEED_LINES = [
    {"id": "seed_task_0", "name": "breakfast_suggestion",
     "instruction": "Is there anything I can eat for a breakfast that doesn't include eggs, yet includes protein?",
     "instances": [{"input": "", "output": "Yes, a bowl of oatmeal with peanut butter and milk."}],
     "is_classification": False},
    {"id": "seed_task_1", "name": "sentiment_label",
     "instruction": "Classify the sentiment of the sentence as positive or negative.",
     "instances": [{"input": "I loved the film.", "output": "positive"},
                   {"input": "The soup was cold \u2014 and bland.", "output": "negative"}],
     "is_classification": True},
]
# Stanford Alpaca's alpaca_data.json layout: a JSON array, indent=4, keys instruction/input/output.
ALPACA = [
    {"instruction": "Give three tips for staying healthy.", "input": "",
     "output": "1. Eat a balanced diet.\n2. Exercise regularly.\n3. Sleep enough."},
    {"instruction": "Translate the sentence into French.", "input": "I like tea.", "output": "J'aime le th\u00e9."},
]


@pytest.fixture
def seed_file(tmp_path):
    path = tmp_path / "seed_tasks.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in SEED_LINES), encoding="utf-8")
    return path


@pytest.fixture
def alpaca_file(tmp_path):
    path = tmp_path / "alpaca_data.json"
    path.write_text(json.dumps(ALPACA, indent=4), encoding="utf-8")
    return path


def test_self_instruct_seed_file_loads_unchanged_and_round_trips(seed_file, tmp_path):
    tasks = load_tasks(seed_file)
    assert [t.id for t in tasks] == ["seed_task_0", "seed_task_1"]
    assert tasks[1].is_classification and tasks[1].instances[1] == Instance("The soup was cold \u2014 and bland.",
                                                                            "negative")
    assert tasks[0].language == "en" and tasks[0].category == ""
    out = tmp_path / "out.jsonl"
    write_jsonl(out, tasks)
    assert read_jsonl(out) == SEED_LINES  # same objects, same keys (no default course keys added)
    assert [list(d) for d in read_jsonl(out)] == [list(d) for d in SEED_LINES]  # same key order
    assert load_tasks(out) == tasks


def test_alpaca_file_loads_unchanged_and_round_trips(alpaca_file, tmp_path):
    records = load_records(alpaca_file)
    assert records == [Record(**d) for d in ALPACA]
    assert to_alpaca(records) == ALPACA and from_alpaca(ALPACA) == records
    out = tmp_path / "copy.json"
    write_json(out, records, indent=4)
    assert read_json(out) == ALPACA
    jl = tmp_path / "copy.jsonl"
    write_jsonl(jl, records)
    assert load_records(jl) == records


def test_alpaca_extra_keys_are_ignored_and_missing_input_defaults_to_empty(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"instruction": "Say hi.", "output": "Hi!", "text": "whole prompt"}\n')
    assert load_records(path) == [Record("Say hi.", "", "Hi!")]


def test_seed_file_flattens_to_records_and_groups_back(seed_file):
    records = load_records(seed_file)
    assert len(records) == 3 and records[1] == Record(SEED_LINES[1]["instruction"], "I loved the film.", "positive")
    regrouped = records_to_tasks(records)
    assert [len(t.instances) for t in regrouped] == [1, 2]


def test_chat_messages_round_trip_and_file(tmp_path):
    r = Record("Summarise the text in one line.", "Cats sleep a lot.\n\nThey also purr.", "Cats sleep and purr.")
    msgs = to_messages(r)
    assert msgs == [{"role": "user", "content": "Summarise the text in one line.\n\nCats sleep a lot.\n\nThey also purr."},
                    {"role": "assistant", "content": "Cats sleep and purr."}]
    assert from_messages(msgs) == r
    assert from_messages([{"role": "system", "content": "Be brief."}] + msgs) == r
    path = tmp_path / "chat.jsonl"
    write_jsonl(path, [{"messages": msgs}])
    assert load_records(path) == [r]
    with pytest.raises(DataError, match="role"):
        from_messages([{"role": "robot", "content": "x"}])


def test_dataset_round_trip_records_and_tasks(seed_file):
    tasks = load_tasks(seed_file)
    records = [r for t in tasks for r in t.to_records()]
    ds = to_dataset(records)
    assert ds.column_names == ["instruction", "input", "output"] and len(ds) == 3
    assert from_dataset(ds) == records
    assert from_dataset(to_dataset(tasks)) == tasks


def test_seed_dict_round_trip_keeps_course_keys():
    t = Task("Translate the word into Chinese.", [Instance("cat", "猫")], language="zh", category="translation",
             source="hand", name="translate_word", id="t1")
    d = to_seed(t)
    assert d["language"] == "zh" and d["category"] == "translation" and from_seed(d) == t


@pytest.mark.parametrize("content, field", [
    ('{"instruction": "", "instances": [{"input": "", "output": "x"}]}', "instruction"),
    ('{"instruction": "Do X.", "instances": [{"input": "", "output": 1}]}', "instances[0].output"),
    ('{"instruction": "Do X.", "instances": [{"input": ""}]}', "instances[0].output"),
    ('{"instruction": "Do X.", "instances": [{"input": "", "output": "y"}], "is_classification": "no"}',
     "is_classification"),
])
def test_load_tasks_errors_name_file_line_and_field(tmp_path, content, field):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(SEED_LINES[0]) + "\n" + content + "\n")
    with pytest.raises(DataError) as err:
        load_tasks(path)
    assert err.value.line == 2 and err.value.field == field
    assert "bad.jsonl:2" in str(err.value) and field in str(err.value)


def test_json_array_errors_give_the_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[\n  {"instruction": "a b c d", "output": "x"},\n  {"instruction": "a", "output": }\n]')
    with pytest.raises(DataError, match=r"bad.json:3: .*invalid JSON"):
        load_records(path)
    path.write_text('[\n  {"instruction": "a b c d", "output": "x"},\n  {"instruction": "a"}\n]')
    with pytest.raises(DataError, match=r"bad.json:3: .*field 'output': missing"):
        load_records(path)


def test_wrong_encoding_names_the_line(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"instruction": "ok", "output": "x"}\n{"instruction": "caf\xe9", "output": "x"}\n')
    with pytest.raises(DataError, match=r"latin1.jsonl:2: .*UTF-8"):
        read_jsonl(path)


def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path):
    path = tmp_path / "data.jsonl"
    write_jsonl(path, [Record("Old one.", "", "x")])
    before = path.read_bytes()

    def items():
        yield Record("New one.", "", "y")
        raise KeyboardInterrupt  # the process is interrupted mid-write

    with pytest.raises(KeyboardInterrupt):
        write_jsonl(path, items())
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["data.jsonl"]  # no temporary file left behind
    with pytest.raises(TypeError):
        write_json(path, [object()])  # not serialisable: fails before replacing anything
    assert path.read_bytes() == before


text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
one_paragraph = text.filter(lambda s: s.strip() and "\n\n" not in s + "\n")  # see formats.py
records = st.builds(Record, one_paragraph, text, text)
tasks = st.builds(Task, one_paragraph, st.lists(st.builds(Instance, text, text), min_size=1, max_size=3),
                  st.booleans(), st.sampled_from(["en", "zh"]), text, text, text, text)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rs=st.lists(records, max_size=4), ts=st.lists(tasks, min_size=1, max_size=3))
def test_round_trips_are_lossless(tmp_path, rs, ts):
    for r in rs:
        assert from_alpaca(to_alpaca(r)) == r
        assert from_messages(to_messages(r)) == r
    assert [from_seed(to_seed(t)) for t in ts] == ts
    write_jsonl(tmp_path / "t.jsonl", ts)
    assert load_tasks(tmp_path / "t.jsonl") == ts
    write_json(tmp_path / "r.json", rs)
    assert read_json(tmp_path / "r.json") == [r.to_dict() for r in rs]
    if rs:
        write_jsonl(tmp_path / "r.jsonl", rs)
        assert load_records(tmp_path / "r.jsonl") == rs
