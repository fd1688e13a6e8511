"""`instructlib` on the command line: help that explains itself, --version, and bad input files that
end in `file:line: error: ...` and exit status 1 or 2, never in a Python traceback."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from instructlib import __version__
from instructlib.cli import COMMAND_MODULES, build_parser, main
from instructlib.data import DataError, read_json, read_jsonl
from instructlib.data.io import load_records
from instructlib.data.quality import verb_noun

GOOD = {"instruction": "Write a haiku about the sea.", "input": "", "output": "Waves fold into foam"}


def run(capsys, *argv) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `instructlib argv...` run in this process."""
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse: --help, --version, usage errors
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------- help and version

def test_top_level_help_describes_every_command(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert "Tools of the course" in out and "exit status" in out
    assert "Each command lives in its own module, which exposes" not in out  # the old docstring cut
    for command in ("validate", "lint", "build-exercises", "grade"):
        assert f"\n    {command}" in out, command
    sub = build_parser()._subparsers._group_actions[0]
    assert all(action.help for action in sub._choices_actions), "every command has a one-line help"


def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.startswith(f"instructlib {__version__}")


@pytest.mark.parametrize("command", ["validate", "lint"])
def test_data_commands_name_formats_and_exit_codes(capsys, command):
    code, out, _ = run(capsys, command, "--help")
    assert code == 0
    for needle in ("seed tasks", "Alpaca", "chat", ".jsonl", "exit status", "  0 ", "  1 ", "  2 "):
        assert needle in out, needle


def test_command_modules_are_importable():
    assert "instructlib.data.cli" in COMMAND_MODULES
    build_parser()  # every listed module registers without error


# ---------------------------------------------------------------- unreadable paths

def test_missing_directory_and_symlinks(capsys, tmp_path):
    (tmp_path / "adir").mkdir()
    os.symlink(tmp_path / "nowhere.jsonl", tmp_path / "dangling.jsonl")
    os.symlink(tmp_path / "loop2.jsonl", tmp_path / "loop1.jsonl")
    os.symlink(tmp_path / "loop1.jsonl", tmp_path / "loop2.jsonl")
    for name, reason in [("missing.jsonl", "No such file"), ("adir", "Is a directory"),
                         ("dangling.jsonl", "No such file"), ("loop1.jsonl", "symbolic links")]:
        path = str(tmp_path / name)
        code, out, err = run(capsys, "validate", path)
        assert code == 1 and f"{path}: error: cannot read: " in out and reason in out, (name, out)
        code, out, err = run(capsys, "lint", path)
        assert code == 2 and f"{path}: error: cannot read: " in err and reason in err, (name, err)
        assert "Traceback" not in out + err


def test_unreadable_file(capsys, tmp_path, monkeypatch):
    path = write(tmp_path / "secret.jsonl", json.dumps(GOOD) + "\n")
    real = Path.read_bytes

    def deny(self):  # the tests may run as root, who can read a chmod 000 file: simulate the refusal
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", deny)
    code, out, _ = run(capsys, "validate", str(path))
    assert code == 1 and f"{path}: error: cannot read: Permission denied" in out
    code, _, err = run(capsys, "lint", str(path))
    assert code == 2 and f"{path}: error: cannot read: Permission denied" in err


# ---------------------------------------------------------------- hostile JSON

HOSTILE = {
    "bigint.jsonl": ('{"instruction": "x", "input": "", "output": ' + "9" * 5000 + "}\n",
                     ":1: error: invalid JSON: a number with more than 4300 digits"),
    "deep.jsonl": ("[" * 50000 + "]" * 50000 + "\n", ":1: error: JSON nested too deeply"),
    "deep.json": ('[{"a": ' + "[" * 50000 + "]" * 50000 + "}]\n", ":1: error: JSON nested too deeply"),
    "surrogate.jsonl": ('{"instruction": "bad \\ud800 here", "input": "", "output": "y"}\n',
                        ":1: error: lone UTF-16 surrogate \\ud800"),
    "dupkey.jsonl": (json.dumps(GOOD) + '\n{"instruction": "a", "instruction": "b", "input": "", "output": "y"}\n',
                     ":2: error: duplicate key 'instruction'"),
    "dupkey.json": (json.dumps([GOOD, GOOD], indent=1)[:-1] + ',\n {"output": "y", "input": "", "output": "z"}]',
                    ":13: error: duplicate key 'output'"),
    "array.jsonl": (json.dumps([GOOD, GOOD]) + "\n", ":1: error: this .jsonl file holds a JSON array"),
    "pretty_array.jsonl": (json.dumps([GOOD, GOOD], indent=2) + "\n",
                           ":1: error: invalid JSON: Expecting value (column 2); this .jsonl file holds a JSON array"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_json_is_a_located_error(capsys, tmp_path, name):
    text, expected = HOSTILE[name]
    path = write(tmp_path / name, text)
    code, out, err = run(capsys, "validate", str(path))
    assert code == 1 and f"{path}{expected}" in out, out
    code, out, err = run(capsys, "lint", str(path))
    assert code == 2 and f"{path}{expected}" in err and "not linted" in err, err
    with pytest.raises(DataError) as info:  # the library readers agree with the command line
        read_json(path) if name.endswith(".json") else read_jsonl(path)
    assert str(info.value).startswith(f"{path}:")
    with pytest.raises(DataError):
        load_records(path)


def test_surrogate_pairs_and_non_ascii_are_fine(tmp_path):
    path = write(tmp_path / "ok.jsonl", '{"instruction": "smile \\ud83d\\ude00 微笑", "input": "", "output": "y"}\n')
    assert read_jsonl(path)[0]["instruction"] == "smile \U0001F600 微笑"


def test_jsonl_of_plain_lists_is_still_jsonl(tmp_path):
    path = write(tmp_path / "ids.jsonl", "[1, 2, 3]\n[4]\n")
    assert read_jsonl(path) == [[1, 2, 3], [4]]


def test_extra_data_on_a_jsonl_line(tmp_path):
    path = write(tmp_path / "x.jsonl", json.dumps(GOOD) + "\n" + json.dumps(GOOD) + " {}\n")
    with pytest.raises(DataError, match=r"x.jsonl:2: error: invalid JSON: extra data after the value \(column"):
        read_jsonl(path)


def test_given_repeated_5000_times_lints(capsys, tmp_path):
    """The verb-noun parse skips opening clauses in a loop; it used to recurse once per "Given,"."""
    assert verb_noun("Given, " * 5000) == ("given", "")
    assert verb_noun("给定，" * 5000) == ("", "")
    assert verb_noun("Given x, " * 3000 + "write a poem") == ("write", "poem")
    task = {"id": "t1", "name": "t", "instruction": "Given, " * 5000, "is_classification": False,
            "instances": [{"input": "a", "output": "b"}]}
    path = write(tmp_path / "given.jsonl", json.dumps(task) + "\n")
    code, out, err = run(capsys, "lint", "--all", str(path))
    assert code == 0 and "too_long" in out and not err


# ---------------------------------------------------------------- lint's report

def test_lint_counts_what_it_shows_and_names_lines(capsys, tmp_path):
    rows = [{"instruction": "Classify the sentiment of the review as positive or negative.",
             "input": "Great film.", "output": "positive"},
            {"instruction": "Do something with {text}", "input": "", "output": ""},
            {"instruction": "Classify the sentiment of the review as positive or negative.",
             "input": "Dull.", "output": "negative"},
            {"instruction": "  Summarise the paragraph in one sentence.  ", "input": "A long text.",
             "output": "A summary."}]
    path = write(tmp_path / "a.json", json.dumps(rows, indent=2))
    code, out, _ = run(capsys, "lint", str(path))
    issue_lines = [line for line in out.splitlines() if ": warning: " in line or ": error: " in line
                   or ": info: " in line]
    assert code == 1  # an unfilled placeholder is an error
    assert all(line.startswith(f"{path}:") for line in issue_lines), issue_lines
    assert any(line.startswith(f"{path}:7: task_1: error: completeness/placeholder") for line in issue_lines)
    summary = out.strip().splitlines()[-1]
    assert f" {len(issue_lines)} issues " in summary, (summary, issue_lines)
    assert "info-level not shown" in summary  # the untrimmed instruction is info-level
    code, out_all, _ = run(capsys, "lint", "--all", str(path))
    shown_all = [line for line in out_all.splitlines() if ": info: " in line]
    assert shown_all and f" {len(issue_lines) + len(shown_all)} issues " in out_all.strip().splitlines()[-1]
    code, out_json, _ = run(capsys, "lint", "--json", str(path))
    assert len(json.loads(out_json)) == len(issue_lines)
    assert all(i["location"].startswith(f"{path}:") for i in json.loads(out_json))


def test_lint_fails_on_a_file_validate_rejects(capsys, tmp_path):
    task = {"id": "same", "name": "t", "instruction": "Write a poem about the sea in four lines.",
            "instances": [{"input": "", "output": "Waves."}], "is_classification": False}
    path = write(tmp_path / "dup.jsonl", json.dumps(task) + "\n" + json.dumps({**task, "name": "u"}) + "\n")
    code, out, _ = run(capsys, "validate", str(path))
    assert code == 1 and "duplicate id 'same'" in out
    code, _, err = run(capsys, "lint", str(path))
    assert code == 2 and f"{path}:2: error: field 'id': duplicate id 'same'" in err


def test_clean_file_exits_zero(capsys, tmp_path):
    path = write(tmp_path / "ok.jsonl", json.dumps(GOOD) + "\n")
    assert run(capsys, "validate", str(path))[0] == 0
    assert run(capsys, "lint", str(path))[0] == 0


def test_plot_to_an_unwritable_place(capsys, tmp_path):
    path = write(tmp_path / "ok.jsonl", json.dumps(GOOD) + "\n")
    code, _, err = run(capsys, "lint", str(path), "--plot", str(tmp_path / "no" / "such" / "dir" / "p.png"))
    assert code == 2 and "error: cannot write the plot" in err


def test_real_process_prints_no_traceback(tmp_path):
    """End to end in a fresh interpreter (the console script's code path), on the nastiest inputs."""
    paths = [write(tmp_path / n, HOSTILE[n][0]) for n in ("deep.jsonl", "bigint.jsonl")] + [tmp_path / "missing"]
    for command in ("validate", "lint"):
        out = subprocess.run([sys.executable, "-m", "instructlib.cli", command, *map(str, paths)],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode in (1, 2) and "Traceback" not in out.stdout + out.stderr, out.stderr
        assert out.stdout.count(": error: ") + out.stderr.count(": error: ") >= 3


def test_a_command_module_that_fails_to_import_leaves_the_others_working(capsys, monkeypatch):
    import instructlib.cli as cli

    monkeypatch.setattr(cli, "COMMAND_MODULES", cli.COMMAND_MODULES + ("instructlib.no_such_module", "instructlib.config"))
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "commands not available here" in out and "instructlib.no_such_module" in out
    assert "instructlib.config: AttributeError" in out  # a module without register()
    assert run(capsys, "validate", "--help")[0] == 0
