"""The quality linter: each rule fires on a task built to break it and stays quiet on clean tasks."""
import argparse
import json

import pytest

from instructlib.data import Instance, Task, write_jsonl
from instructlib.data import cli
from instructlib.data.quality import (answer_format, issue_counts, lint_table, lint_tasks, plot_verb_noun,
                                      verb_noun)

CLEAN = [
    Task("Classify the sentiment of the review as positive or negative.",
         [Instance("I loved every minute.", "positive"), Instance("Dull and far too long.", "negative")],
         is_classification=True, id="sentiment"),
    Task("Write a haiku about the sea.", [Instance("", "Grey waves fold and break\nsalt wind combs the dunes\n"
                                                       "gulls hang on the air")], id="haiku"),
    Task("请把下面的句子翻译成英文。", [Instance("我喜欢喝茶。", "I like drinking tea.")], language="zh", id="zh"),
]


def rules(tasks):
    return {(i.task_id, i.criterion, i.rule) for i in lint_tasks(tasks)}


def test_clean_tasks_have_no_issues():
    assert lint_tasks(CLEAN) == []


@pytest.mark.parametrize("task, criterion, rule", [
    (Task("Summarise.", [Instance("Text.", "T.")]), "clarity", "too_short"),
    (Task(" ".join(["word"] * 151), [Instance("", "x")]), "clarity", "too_long"),
    (Task("Write something about dogs and so on.", [Instance("", "Dogs bark.")]), "clarity", "vague_wording"),
    (Task("写一些东西等等关于猫的内容。", [Instance("", "猫很可爱。")], language="zh"), "clarity", "vague_wording"),
    (Task("- Write a poem about rain.", [Instance("", "Rain.")]), "clarity", "starts_with_punctuation"),
    (Task("Write a poem about {topic} please.", [Instance("", "A poem.")]), "completeness", "placeholder"),
    (Task("Write a poem about rain please.", [Instance("", "TODO")]), "completeness", "placeholder"),
    (Task("Correct the grammar of the following sentence.", [Instance("", "Fixed.")]), "completeness",
     "input_missing"),
    (Task("Write a poem about the rain.", [Instance("", "   ")]), "completeness", "no_output"),
    (Task("Write a poem about the rain.", []), "completeness", "no_instances"),
    (Task("Label the sentence as positive or negative.", [Instance("Good.", "Positive"), Instance("Bad.", "negative"),
                                                          Instance("Fine.", "positive.")], is_classification=True),
     "consistency", "label_variants"),
    (Task("Label the sentence as positive or negative.", [Instance("Good.", "It is a positive sentence overall.")],
          is_classification=True), "consistency", "label_not_short"),
    (Task("Label the sentence as positive or negative.", [Instance("Good.", "positive"), Instance("Great.", "positive")],
          is_classification=True), "consistency", "single_label"),
    (Task("Compute the sum of the numbers in the list.", [Instance("1, 2", "3"), Instance("2, 2", "four"),
                                                           Instance("5, 5", "10")]), "consistency", "mixed_answer_format"),
    (Task("Tell whether the number is even.", [Instance("2", "even"), Instance("3", "odd"), Instance("4", "even")]),
     "consistency", "unflagged_classification"),
    (Task("Name the capital of the country.", [Instance("France", "Paris"), Instance("France", "Paris")]),
     "diversity", "duplicate_instance"),
])
def test_each_rule_fires(task, criterion, rule):
    task.id = "bad"
    assert ("bad", criterion, rule) in rules([task])


def test_near_duplicates_and_dominant_verb():
    tasks = [Task(f"Write a short story about a {animal} who learns to swim.", [Instance("", "Once...")], id=f"t{k}")
             for k, animal in enumerate(["cat", "dog", "bat"])]
    found = rules(tasks)
    assert ("t1", "diversity", "near_duplicate") in found and ("t0", "diversity", "near_duplicate") not in found
    many = [Task(f"Write {w} lines.", [Instance("", "x")], id=f"w{k}") for k, w in enumerate("abcdefghij")]
    assert ("*", "diversity", "dominant_verb") in rules(many)
    varied = [Task(f"{v} the text about {k}.", [Instance("x", "y")], id=f"v{k}")
              for k, v in enumerate(["Write", "Translate", "Summarise", "Classify", "Rewrite", "Explain", "List",
                                     "Correct", "Shorten", "Expand", "Write"])]
    assert ("*", "diversity", "dominant_verb") not in rules(varied)  # top verb 2/11 < 25%


@pytest.mark.parametrize("instruction, expected", [
    ("Please write a short poem about rain.", ("write", "poem")),
    ("Can you list three fruits that are red?", ("list", "fruit")),
    ("Given a sentence, classify its sentiment.", ("classify", "sentiment")),
    ("What is the capital of France?", ("(question)", "capital")),
    ("I want you to translate the sentences below.", ("translate", "sentence")),
    ("请写一首关于春天的诗。", ("写", "春天")),
    ("给定一个句子，判断它的情感。", ("判断", "它的")),
])
def test_verb_noun(instruction, expected):
    assert verb_noun(instruction) == expected


@pytest.mark.parametrize("output, fmt", [("Yes.", "yes/no"), ("-3.5", "number"), ("1,024", "number"),
                                         ('{"a": 1}', "json"), ("- a\n- b", "list"), ("1. a\n2. b", "list"),
                                         ("Paris", "text"), ("a\nb", "multi-line text"), (" ", "empty")])
def test_answer_format(output, fmt):
    assert answer_format(output) == fmt


def test_table_counts_and_plot():
    bad = Task("Do something with {text}", [Instance("", "")], id="bad")
    issues = lint_tasks(CLEAN + [bad])
    table = lint_table(CLEAN + [bad], issues).splitlines()
    assert table[0].split() == ["task", "clarity", "completeness", "consistency", "diversity"]
    assert table[2].split() == ["sentiment", "ok", "ok", "ok", "ok"]
    assert table[-1].split() == ["bad", "vague_wording", "no_output,placeholder", "ok", "ok"]
    counts = issue_counts(issues)
    assert counts["completeness"]["error"] == 2 and counts["clarity"]["warning"] == 1
    import matplotlib
    matplotlib.use("Agg")
    fig = plot_verb_noun(CLEAN + [bad])
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()][-1] in {"classify", "write", "do", "把"}


def test_lint_command(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="instructlib")
    cli.register(parser.add_subparsers(dest="command", required=True))

    def run(*argv):
        args = parser.parse_args(list(argv))
        return args.func(args), capsys.readouterr()

    good = tmp_path / "good.jsonl"
    write_jsonl(good, CLEAN)
    code, out = run("lint", str(good))
    assert code == 0 and "3 tasks, 0 issues" in out.out
    bad = tmp_path / "bad.jsonl"
    write_jsonl(bad, CLEAN + [Task("Fix the following sentence.", [Instance("", "Fixed.")], id="fix")])
    code, out = run("lint", str(bad), "--plot", str(tmp_path / "vn.png"))
    assert code == 1 and "fix: error: completeness/input_missing" in out.out
    assert (tmp_path / "vn.png").stat().st_size > 1000
    code, out = run("lint", str(bad), "--json")
    assert [i["rule"] for i in json.loads(out.out)] == ["input_missing"]
    alpaca = tmp_path / "alpaca.json"
    alpaca.write_text(json.dumps([{"instruction": "Say hi.", "input": "", "output": "Hi"}] * 2))
    code, out = run("lint", str(alpaca))
    assert code == 0 and "duplicate_instance" in out.out  # records grouped into one task by instruction
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"instruction": 3}\n')
    code, out = run("lint", str(broken))
    assert code == 2 and "broken.jsonl:1" in out.err and "instructlib validate" in out.err
