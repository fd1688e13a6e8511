"""`instructlib validate` on good files and on many kinds of bad input: every problem, with file/line/field."""
import argparse
import json
import subprocess
import sys

import pytest

from instructlib.data import cli
from instructlib.data.validate import validate_file

GOOD_TASK = {"id": "t0", "name": "colour", "instruction": "Name the colour of the sky on a clear day.",
             "instances": [{"input": "", "output": "Blue."}], "is_classification": False}
GOOD_RECORD = {"instruction": "Name a primary colour.", "input": "", "output": "Red."}


def run(argv, capsys):
    """Run a data command as `instructlib` would; return (exit code, stdout)."""
    parser = argparse.ArgumentParser(prog="instructlib")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code = args.func(args)
    return code, capsys.readouterr().out


def jsonl(*objs):
    return "".join((o if isinstance(o, str) else json.dumps(o, ensure_ascii=False)) + "\n" for o in objs)


def task(**changes):
    d = json.loads(json.dumps(GOOD_TASK))
    for k, v in changes.items():
        if v is KeyError:
            d.pop(k)
        else:
            d[k] = v
    return d


# (name, file name, bytes, expected (line, field or None, text in message))
BAD = [
    ("malformed_line", "a.jsonl", jsonl(GOOD_TASK, '{"id": "t1", "instruction": '), (2, None, "invalid JSON")),
    ("missing_instruction", "a.jsonl", jsonl(GOOD_TASK, task(id="t1", instruction=KeyError)),
     (2, "instruction", "missing")),
    ("empty_instruction", "a.jsonl", jsonl(task(instruction="   ")), (1, "instruction", "empty")),
    ("mistyped_output", "a.jsonl", jsonl(task(instances=[{"input": "", "output": 42}])),
     (1, "instances[0].output", "must be a string")),
    ("missing_output", "a.jsonl", jsonl(task(instances=[{"input": "x"}])), (1, "instances[0].output", "missing")),
    ("instances_not_list", "a.jsonl", jsonl(task(instances="Blue.")), (1, "instances", "must be a list")),
    ("no_instances", "a.jsonl", jsonl(task(instances=[])), (1, "instances", "empty")),
    ("is_classification_not_bool", "a.jsonl", jsonl(task(is_classification="yes")),
     (1, "is_classification", "true or false")),
    ("unknown_key_typo", "a.jsonl", jsonl(task(catgory="qa")), (1, "catgory", "unknown key")),
    ("duplicate_id", "a.jsonl", jsonl(GOOD_TASK, GOOD_TASK), (2, "id", "duplicate id")),
    ("not_an_object", "a.jsonl", jsonl(GOOD_TASK, '["a", "b"]'), (2, None, "expected a JSON object")),
    ("wrong_encoding", "a.jsonl", jsonl(GOOD_RECORD).encode() + '{"instruction": "Traduis «café».", "output": "x"}\n'
     .encode("latin-1"), (2, None, "UTF-8")),
    ("mixed_formats", "a.jsonl", jsonl(GOOD_RECORD, GOOD_TASK), (2, None, "started as Alpaca records")),
    ("record_input_null", "a.jsonl", jsonl(dict(GOOD_RECORD, input=None)), (1, "input", "must be a string")),
    ("bad_chat_role", "a.jsonl", jsonl({"messages": [{"role": "human", "content": "Hi"},
                                                     {"role": "assistant", "content": "Hello"}]}),
     (1, "messages[0].role", "must be one of")),
    ("json_array_syntax", "a.json", '[\n  {"instruction": "Say hi.", "output": "Hi"}\n  {"instruction": "x"}\n]',
     (3, None, "expected ',' or ']'")),
    ("json_array_missing_field", "a.json", json.dumps([GOOD_RECORD, {"instruction": "Say hi."}], indent=2),
     (7, "output", "missing")),
    ("trailing_garbage", "a.json", json.dumps([GOOD_RECORD]) + "\nextra", (2, None, "extra data")),
]


@pytest.mark.parametrize("name, filename, content, expected", BAD, ids=[b[0] for b in BAD])
def test_validate_reports_bad_input_with_file_line_and_field(tmp_path, capsys, name, filename, content, expected):
    path = tmp_path / filename
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    code, out = run(["validate", str(path)], capsys)
    assert code == 1, out
    line, field, text = expected
    report = validate_file(path)
    assert any(p.line == line and p.field == field and text in p.message for p in report.problems), report.problems
    printed = f"{path}:{line}: error: " + (f"field '{field}': " if field else "")
    assert any(l.startswith(printed) and text in l for l in out.splitlines()), out


def test_validate_reports_every_problem_not_just_the_first(tmp_path, capsys):
    path = tmp_path / "many.jsonl"
    path.write_text(jsonl(task(instruction=""), "{oops", task(id="t2", instances=[{"input": 1, "output": 2}])))
    report = validate_file(path)
    assert [(p.line, p.field) for p in report.problems] == [
        (1, "instruction"), (2, None), (3, "instances[0].input"), (3, "instances[0].output")]
    code, out = run(["validate", str(path)], capsys)
    assert code == 1 and "4 problem(s)" in out


def test_validate_good_files_and_empty_file(tmp_path, capsys):
    good = tmp_path / "seed.jsonl"
    good.write_text(jsonl(GOOD_TASK, task(id="t1")))
    alpaca = tmp_path / "alpaca.json"
    alpaca.write_text(json.dumps([GOOD_RECORD] * 3, indent=4))
    code, out = run(["validate", str(good), str(alpaca)], capsys)
    assert code == 0
    assert "OK (2 items, Self-Instruct seed tasks)" in out and "OK (3 items, Alpaca records)" in out
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    code, out = run(["validate", str(empty)], capsys)
    assert code == 1 and "file is empty" in out
    code, out = run(["validate", str(tmp_path / "nope.jsonl")], capsys)
    assert code == 1 and "cannot read" in out


def test_instructlib_command_line_entry_point(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(jsonl(task(instances=[{"input": "", "output": 3}])))
    proc = subprocess.run([sys.executable, "-m", "instructlib.cli", "validate", str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and f"{bad}:1: error: field 'instances[0].output'" in proc.stdout
