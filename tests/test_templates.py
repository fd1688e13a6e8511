"""Chapter 06: PromptSource-compatible templates, the template linter, the bank, rendering to records."""
from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from instructlib.data.verifiable import FAMILIES, exact_match
from instructlib.generate.templates.render import (RenderError, check_fields, render_rows, render_to_jsonl, read_examples,
                                         source_id)
from instructlib.generate.templates.bank_data import (HELDOUT_PER_FAMILY, bank_examples, split_templates,
                                                template_kind, templated_examples, training_templates,
                                                translation_pairs)
from instructlib.generate.templates.lint import lint_template, lint_templates
from instructlib.generate.templates.promptsource import (BANK_DIR, Template, TemplateError, TemplateMetadata, bank_names,
                                            dumps_promptsource, load_bank, load_promptsource, loads_promptsource,
                                            read_template_file)

FIX = Path(__file__).parent / "fixtures" / "promptsource"
FIXTURE_FILES = ["super_glue_rte.yaml", "ag_news.yaml", "imdb.yaml", "super_glue_copa.yaml", "common_gen.yaml"]
ROOT = Path(__file__).resolve().parents[1]
UNKNOWN_KEY = FIX / "unknown_key.yaml"  # hand-written; `task_template: true` in a !Template, where upstream head_qa/en has it
EXAM = {"category": "biology", "qtext": "Which organelle makes ATP?", "ra": 2,
        "answers": [{"aid": 1, "atext": "The ribosome"}, {"aid": 2, "atext": "The mitochondrion"}]}


# --- PromptSource parity ------------------------------------------------------------------------

def test_renders_equal_promptsource_on_real_files():
    """expected.json was produced by PromptSource's own Template.apply (see make_expected.py)."""
    expected = json.loads((FIX / "expected.json").read_text())
    examples = json.loads((FIX / "examples.json").read_text())
    files = {name: read_template_file(FIX / name).templates for name in FIXTURE_FILES}
    assert len(expected) > 300
    for key, parts in expected.items():
        fname, tid, k, seed = key.split("|")
        assert files[fname][tid].apply_parts(examples[fname][int(k)], seed=int(seed)) == parts, key


def test_parity_cases_cover_truncation_pipes_choice_and_answer_choices():
    expected = json.loads((FIX / "expected.json").read_text())
    imdb_long = [v for k, v in expected.items() if k.startswith("imdb.yaml") and k.split("|")[2] == "1"]
    assert any(v[0].endswith("...") for v in imdb_long), "a >2048-character review is truncated"
    assert any("|||" in v[0] for k, v in expected.items() if k.startswith("super_glue_rte")), "escaped pipes survive"
    common = {}
    for k, v in expected.items():
        if k.startswith("common_gen"):
            common.setdefault(tuple(k.split("|")[1:3]), set()).add(tuple(v))
    assert any(len(renders) > 1 for renders in common.values()), "the choice filter depends on the seed"


def test_choice_filter_is_seeded_per_call_not_global():
    t = Template("pick", "Pick: {{ xs | choice }} ||| ok", task="t")
    ex = {"xs": list("abcdefghij")}
    assert t.apply(ex, seed=3) == t.apply(ex, seed=3)
    assert len({t.apply(ex, seed=s)[0] for s in range(20)}) > 3
    assert t.apply(ex) == t.apply(ex), "no seed given: a stable hash of template and example"
    random.seed(5)
    before = random.random()
    random.seed(5)
    t.apply(ex, seed=1)
    assert random.random() == before, "rendering must not touch the global random state"


def test_answer_choices_rendered_and_offered_to_the_template():
    t = read_template_file(FIX / "super_glue_copa.yaml").templates
    tpl = next(x for x in t.values() if x.answer_choices == "{{choice1}} ||| {{choice2}}")
    ex = json.loads((FIX / "examples.json").read_text())["super_glue_copa.yaml"][0]
    assert tpl.answer_choices_list(ex) == [ex["choice1"], ex["choice2"]]
    with pytest.raises(TemplateError, match="answer_choices"):
        tpl.apply({**ex, "answer_choices": "x"})


def test_apply_needs_exactly_two_parts_and_names_the_template():
    t = Template("no-sep", "Just a prompt {{x}}", task="demo")
    with pytest.raises(TemplateError, match=t.id):
        t.apply({"x": 1})
    assert t.apply_parts({"x": 1}) == ["Just a prompt 1"]
    bad = Template("syntax", "{{ x ||| y", task="demo")
    with pytest.raises(TemplateError, match="syntax"):
        bad.apply({"x": 1})


def test_sandbox_blocks_python_internals():
    t = Template("evil", "{{ x.__class__.__mro__ }} ||| y", task="demo")
    with pytest.raises(TemplateError):
        t.apply({"x": "s"})


# --- YAML round trip ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", FIXTURE_FILES)
def test_promptsource_files_round_trip_byte_for_byte(name):
    text = (FIX / name).read_text()
    tf = loads_promptsource(text, name)
    assert dumps_promptsource(tf) == text
    again = loads_promptsource(dumps_promptsource(tf))
    assert [t.jinja for t in again.templates.values()] == [t.jinja for t in tf.templates.values()]


def test_bank_files_round_trip_and_unicode_dump_loads_back():
    for name in bank_names():
        path = BANK_DIR / f"{name}.yaml"
        tf = read_template_file(path)
        assert dumps_promptsource(tf, allow_unicode=True) == path.read_text(encoding="utf-8")
        ascii_text = dumps_promptsource(tf)  # PromptSource's own style: \u escapes
        assert ascii_text.isascii()
        assert {k: t.jinja for k, t in loads_promptsource(ascii_text).templates.items()} == \
               {k: t.jinja for k, t in tf.templates.items()}


def test_new_template_ids_are_stable_and_metadata_extra_keys_survive():
    a = Template("x", "{{a}} ||| {{b}}", task="demo")
    assert a.id == Template("x", "other ||| text", task="demo").id != Template("y", "", task="demo").id
    a.metadata = TemplateMetadata(original_task=False, languages=["zh"], extra={"course_note": "hi"})
    back = next(iter(loads_promptsource(dumps_promptsource([a], "demo")).templates.values()))
    assert back.metadata.extra == {"course_note": "hi"} and back.inverted and back.language == "zh"


def test_unknown_template_key_loads_renders_and_round_trips_byte_for_byte():
    text = UNKNOWN_KEY.read_text()
    tf = loads_promptsource(text, UNKNOWN_KEY.name)
    numbered, open_ended = tf.templates.values()
    assert numbered.extra == {"task_template": True} and open_ended.extra == {} and tf.extra == {}
    assert numbered.apply(EXAM) == ("Subject: biology\n\nWhich organelle makes ATP?\n\n1) The ribosome\n"
                                    "2) The mitochondrion\n\nReply with the number of the right option.", "2")
    assert numbered.answer_choices_list(EXAM) == ["1", "2"]
    assert open_ended.apply(EXAM) == ("Which organelle makes ATP?\nWhich statement answers it?", "The mitochondrion")
    assert dumps_promptsource(tf) == text
    assert dumps_promptsource(loads_promptsource(dumps_promptsource(tf))) == text


def test_unknown_keys_never_change_rendering():
    numbered = next(t for t in read_template_file(UNKNOWN_KEY).templates.values() if t.extra)
    plain = dataclasses.replace(numbered, extra={})
    assert plain.apply(EXAM) == numbered.apply(EXAM) and plain.variables() == numbered.variables()
    shadow = loads_promptsource(UNKNOWN_KEY.read_text().replace("task_template: true", "category: geology"))
    named = shadow.templates[numbered.id]  # an unknown key named like a field the template reads
    assert named.extra == {"category": "geology"} and named.apply(EXAM) == numbered.apply(EXAM)
    assert "geology" not in named.apply({**EXAM, "category": ""})[0]


def test_unknown_keys_keep_their_order_and_never_override_known_ones():
    text = UNKNOWN_KEY.read_text().replace("subset: en\n", "subset: en\ntask_template: true\n")
    tf = loads_promptsource(text)
    assert tf.extra == {"task_template": True} and dumps_promptsource(tf) == text  # top level too
    tpl = loads_promptsource("dataset: d\ntemplates:\n  a: !Template\n    name: n\n    jinja: 'x ||| y'\n"
                             "    zeta: 1\n    alpha: 2\n").templates["a"]
    assert list(tpl.extra) == ["zeta", "alpha"]
    t = Template("x", "{{a}} ||| {{b}}", task="demo", extra={"jinja": "other ||| text", "note": 1})
    back = next(iter(loads_promptsource(dumps_promptsource([t], "demo")).templates.values()))
    assert back.jinja == t.jinja and back.extra == {"note": 1}


@pytest.mark.parametrize("text, where", [
    ("dataset: d\ntemplates:\n  a: !Template\n    name: n\n    id: a\n", "<t>:3: jinja: missing"),
    ("dataset: d\ntemplates:\n  a: !Template\n    name: n\n    jinja: 'x ||| y'\n    answer_choices: [a, b]\n",
     "<t>:3: answer_choices: must be a string"),
    ("dataset: d\ntemplates: [1, 2\n", "<t>:"),
    ("templates: {}\n", "<t>:1: dataset"),
    ("dataset: d\ntemplates:\n  a: !!python/object:os.system {}\n", "<t>"),
])
def test_bad_yaml_names_file_line_and_field(text, where):
    with pytest.raises(TemplateError) as err:
        loads_promptsource(text, "<t>")
    assert str(err.value).startswith(where)


# --- lint --------------------------------------------------------------------------------------

EXAMPLES = [{"input": f"w{k} x{k} y{k}", "output": f"y{k} x{k} w{k}"} for k in range(8)]


def checks(t: Template, examples=EXAMPLES, **kw) -> set[str]:
    findings = lint_template(t, examples, **kw)
    assert all(f.template_id == t.id and t.id in str(f) for f in findings)
    return {f.check for f in findings}


@pytest.mark.parametrize("jinja, expected", [
    ("Reverse: {{ input }} ||| {{ output }}", set()),
    ("Reverse: {{ inptu }} ||| {{ output }}", {"undefined-variable", "unused-variable"}),
    ("Reverse the words. ||| {{ output }}", {"unused-variable"}),
    ("Reverse {{input}} (answer: {{output}}) ||| {{output}}", {"target-leak"}),
    ("Reverse {{input}}. Hint: {{ input.split() | reverse | join(' ') }} ||| {{output}}", {"target-leak"}),
    ("Reverse {{input}} {{output}} ||| {% if false %}{{output}}{% endif %}", {"target-leak", "empty-render"}),
    ("Reverse {{input}} and {{output}}", {"parts"}),
    ("Reverse {{input}} ||| {{output}} ||| again", {"parts"}),
    ("Reverse {{ input ||| {{output}}", {"syntax"}),
    ("Reverse {{ input.nope() }} ||| {{output}}", {"render-error"}),
])
def test_lint_finds_crafted_problems(jinja, expected):
    assert checks(Template("t", jinja, task="demo")) == expected


def test_lint_inverted_template_is_not_a_leak_and_max_in_input_is_not_a_leak():
    inv = Template("inv", "Undo: {{output}} ||| {{input}}", task="demo",
                   metadata=TemplateMetadata(original_task=False))
    assert checks(inv) == set()
    maxes = [{"input": "3 9 4", "output": "9"}, {"input": "12 5", "output": "12"}]
    assert checks(Template("max", "Largest of {{input}}? ||| {{output}}", task="demo"), maxes) == set()


def test_lint_answer_choices_label_space_and_positions():
    examples = [{"word": "hot", "good": "cold", "bad": "warm", "label": 0}] * 8
    ordered = Template("fixed-order", "Opposite of {{word}}: {{good}} or {{bad}}? ||| {{good}}", task="demo",
                       answer_choices="{{good}} ||| {{bad}}", metadata=TemplateMetadata(choices_in_prompt=True))
    assert checks(ordered, examples, fields={"word", "good", "bad"}) == {"answer-position"}
    mixed = [{"word": "hot", "a": "cold", "b": "warm", "label": k % 2} for k in range(8)]
    balanced = Template("balanced", "Opposite of {{word}}: {{a}} or {{b}}? ||| {{ answer_choices[label] }}",
                        task="demo", answer_choices="{{a}} ||| {{b}}", metadata=TemplateMetadata(choices_in_prompt=True))
    assert checks(balanced, mixed) == set()
    three = Template("three", "Sentiment of {{word}}? ||| {{ answer_choices[label] }}", task="demo",
                     answer_choices="bad ||| good ||| meh")
    assert "label-space" in checks(three, mixed, fields={"word", "a", "b", "label"}, label_names=["neg", "pos"])
    outside = Template("outside", "Sentiment of {{word}} {{a}} {{b}}? ||| {{ label }}", task="demo",
                       answer_choices="bad ||| good")
    assert "target-not-in-choices" in checks(outside, mixed)


def test_lint_duplicates_within_language_and_direction():
    a = Template("a", "Reverse the order of the words: {{input}} ||| {{output}}", task="demo")
    b = Template("b", "Reverse the order of these words: {{input}} ||| {{output}}", task="demo")
    c = Template("c", "Reverse the order of the words: {{input}} ||| {{output}}", task="demo")
    d = Template("d", "Name a colour you like: {{input}} ||| {{output}}", task="demo")
    found = {(f.template_name, f.check) for f in lint_templates([a, b, c, d], EXAMPLES)}
    assert ("b", "near-duplicate") in found and ("c", "duplicate") in found
    assert not any(name == "d" for name, _ in found)


def test_lint_on_real_promptsource_files_runs_and_reports_by_id():
    examples = json.loads((FIX / "examples.json").read_text())["super_glue_rte.yaml"]
    templates = load_promptsource(FIX / "super_glue_rte.yaml")
    findings = lint_templates(templates, examples, label_names=["entailment", "not_entailment"])
    ids = {t.id for t in templates}
    assert all(f.template_id in ids for f in findings)
    assert not [f for f in findings if f.severity == "error"], [str(f) for f in findings]


# --- the bank ----------------------------------------------------------------------------------

def test_bank_covers_every_family_and_translation():
    assert set(bank_names()) == set(FAMILIES) | {"translation"}


@pytest.mark.parametrize("name", sorted(set(FAMILIES) | {"translation"}))
def test_bank_sizes_kinds_and_lint_clean(name):
    templates = load_bank(name)
    en = [t for t in templates if t.language == "en"]
    zh = [t for t in templates if t.language == "zh"]
    assert len(en) >= 20 and len(zh) >= 10
    assert any(t.inverted for t in en) and any(t.inverted for t in zh)
    probe = bank_examples(name, "train", 1)[0]
    if name != "translation":
        kinds = {template_kind(t, probe) for t in zh} & {template_kind(t, probe) for t in en}
        assert kinds == {"plain", "format", "inverted"}
    examples = bank_examples(name, "train", 30)
    findings = lint_templates(templates, examples)
    assert findings == [], [str(f) for f in findings]


def test_translation_pairs_are_bilingual():
    pairs = translation_pairs()
    assert len(pairs) >= 30 and len({p["id"] for p in pairs}) == len(pairs)
    assert all(p["en"].isascii() and not p["zh"].isascii() for p in pairs)


# --- rendering ---------------------------------------------------------------------------------

def test_rendering_is_deterministic_order_free_and_deduplicated():
    templates = load_bank("reverse_words")
    examples = bank_examples("reverse_words", "train", 20)
    rows = list(render_rows(templates, examples, per_input=3, seed=7))
    assert rows == list(render_rows(templates, examples, per_input=3, seed=7))
    assert sorted(rows, key=lambda r: r["id"]) == sorted(render_rows(templates, examples[::-1], per_input=3, seed=7),
                                                         key=lambda r: r["id"])
    assert rows != list(render_rows(templates, examples, per_input=3, seed=8))
    assert len(rows) == 60 and all(r["source_id"] == source_id(e) for r, e in zip(rows[::3], examples))
    assert {r["template_id"] for r in rows} <= {t.id for t in templates}
    doubled = list(render_rows(templates, examples + examples, per_input=3, seed=7))
    assert len(doubled) == 60, "the same input rendered twice with the same templates is a duplicate"


def test_render_to_jsonl_validates_and_resumes(tmp_path):
    from instructlib.data.validate import validate_file

    templates, examples = load_bank("capital_of"), bank_examples("capital_of", "train", 30)
    full = tmp_path / "full.jsonl"
    stats = render_to_jsonl(templates, examples, full, per_input=2, seed=1)
    assert stats.written == 60 and validate_file(full).ok
    part = tmp_path / "part.jsonl"
    lines = full.read_text(encoding="utf-8").splitlines(keepends=True)
    part.write_text("".join(lines[:17]) + lines[17][:25], encoding="utf-8")  # killed mid-line
    again = render_to_jsonl(templates, examples, part, per_input=2, seed=1)
    assert again.already_done == 17 and again.written == 43
    assert sorted(part.read_text(encoding="utf-8").splitlines()) == sorted(full.read_text(encoding="utf-8").splitlines())


KILL_SCRIPT = """
import sys, time
import instructlib.generate.templates.render as r
from instructlib.generate.templates.promptsource import load_bank
from instructlib.generate.templates.bank_data import bank_examples
slow = r.render_example
def render_example(*a, **k):
    time.sleep(0.02)
    return slow(*a, **k)
r.render_example = render_example
r.render_to_jsonl(load_bank("antonym"), bank_examples("antonym", "train", 60), sys.argv[1], per_input=2, seed=3)
"""


def test_kill_9_and_resume_gives_the_uninterrupted_rows(tmp_path):
    out = tmp_path / "killed.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(out)], cwd=ROOT)
    deadline = time.time() + 60
    while time.time() < deadline and (not out.exists() or out.read_text(encoding="utf-8").count("\n") < 10):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    n_before = out.read_text(encoding="utf-8").count("\n")
    assert 10 <= n_before < 120, "killed part-way"
    stats = render_to_jsonl(load_bank("antonym"), bank_examples("antonym", "train", 60), out, per_input=2, seed=3)
    ref = tmp_path / "ref.jsonl"
    render_to_jsonl(load_bank("antonym"), bank_examples("antonym", "train", 60), ref, per_input=2, seed=3)
    assert stats.already_done >= n_before - 1
    got = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    want = [json.loads(line) for line in ref.read_text(encoding="utf-8").splitlines()]
    assert sorted(r["id"] for r in got) == sorted(r["id"] for r in want)
    assert sorted(map(json.dumps, got)) == sorted(map(json.dumps, want))


def test_inputs_errors_name_file_line_and_field(tmp_path):
    bad = tmp_path / "in.jsonl"
    bad.write_text('{"input": "a b", "output": "b a"}\n{"input": oops}\n', encoding="utf-8")
    with pytest.raises(RenderError, match=r"in\.jsonl:2"):
        read_examples(bad)
    with pytest.raises(RenderError, match=r"<x>:2: output: missing"):
        check_fields(load_bank("reverse_words"), [{"input": "a", "output": "a"}, {"input": "b"}], "<x>")


def run_cli(*args, cwd):
    """Run `instructlib ARGS` in-process (importing the CLI in a subprocess costs seconds); returns rc, out, err."""
    import contextlib
    import io

    from instructlib.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def test_cli_renders_validates_lints_and_fails_cleanly(tmp_path):
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(json.dumps(e) + "\n" for e in bank_examples("uppercase", "train", 10)))
    out = tmp_path / "out.jsonl"
    res = run_cli("generate", "templates", "--bank", "uppercase", "--inputs", str(inputs), "--out", str(out),
                  "--per-input", "3", "--seed", "2", "--language", "zh", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 30 and {r["language"] for r in rows} == {"zh"}
    assert run_cli("validate", str(out), cwd=tmp_path).returncode == 0
    rte = tmp_path / "rte.jsonl"
    rte.write_text("".join(json.dumps(e) + "\n" for e in json.loads((FIX / "examples.json").read_text())["super_glue_rte.yaml"]))
    res = run_cli("generate", "templates", "--promptsource", str(FIX / "super_glue_rte.yaml"), "--inputs", str(rte),
                  "--lint", cwd=tmp_path)
    assert res.returncode == 0 and "0 errors" in res.stdout, res.stdout + res.stderr
    res = run_cli("generate", "templates", "--bank", "nope", "--out", str(out), cwd=tmp_path)
    assert res.returncode == 2 and "no template bank named 'nope'" in res.stderr and "Traceback" not in res.stderr
    inputs.write_text('{"input": "abc"}\n')
    res = run_cli("generate", "templates", "--bank", "uppercase", "--inputs", str(inputs), "--out", str(out), cwd=tmp_path)
    assert res.returncode == 2 and f"{inputs}:1: output: missing" in res.stderr and "Traceback" not in res.stderr


# --- the experiment's data -------------------------------------------------------------------------

def test_heldout_templates_never_train_and_subsets_are_nested():
    for family in FAMILIES:
        pool, heldout = split_templates(family)
        assert len(heldout) == HELDOUT_PER_FAMILY and not {t.id for t in pool} & {t.id for t in heldout}
        assert len(pool) >= 12 and all(not t.inverted and t.language == "en" for t in pool + heldout)
        one, six, every = (training_templates(family, n, seed=4) for n in (1, 6, None))
        assert one == six[:1] and six == every[:6] and sorted(t.id for t in every) == sorted(t.id for t in pool)
        assert training_templates(family, 6, seed=4) == six != training_templates(family, 6, seed=5)


def test_templated_examples_render_the_chosen_templates():
    one = templated_examples("train", 5, n_templates=1, seed=0, families=["antonym", "add"])
    assert len(one) == 10 and exact_match([e.record.output for e in one], one) == 1.0
    used = {f: training_templates(f, 1, 0)[0] for f in ("antonym", "add")}
    assert all(e.record.instruction.startswith(used[e.family].jinja.split("{{")[0]) for e in one)
    held = templated_examples("test", 5, seed=0, templates="heldout", families=["antonym"])
    train_ids = {t.id for t in training_templates("antonym", None, 0)}
    held_text = {t.jinja.split("{{")[0] for t in split_templates("antonym")[1]}
    assert all(any(e.record.instruction.startswith(h) for h in held_text) for e in held)
    assert not train_ids & {t.id for t in split_templates("antonym")[1]}
    assert templated_examples("test", 5, seed=0, templates="heldout") == templated_examples(
        "test", 5, seed=0, templates="heldout")


