"""Chapter 08: Self-Instruct filters, prompts, parsers, the scripted end-to-end run, resume after kill -9, CLI."""
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from instructlib.data.records import Task
from instructlib.data.seeds import load_seed_tasks
from instructlib.data.validate import validate_file
from instructlib.generate import filters as F
from instructlib.generate.self_instruct import prompts as P
from instructlib.generate.self_instruct.loop import (SelfInstruct, SelfInstructConfig, load_seed_pool, sample_demos,
                                                self_instruct, sidecar_paths)
from instructlib.models.llm import ScriptedLLM

ROOT = Path(__file__).resolve().parents[1]


# ---- filters ----------------------------------------------------------------------------------

@pytest.mark.parametrize("inst, faithful, reason", [
    ("Write a poem", False, "<= 3 words"),
    ("Write a short poem", False, None),
    (" ".join(["word"] * 150), False, None),
    (" ".join(["word"] * 151), False, "> 150 words"),
    ("写一首关于秋天的诗", True, "<= 3 words"),        # the reference: one unspaced "word"
    ("写一首关于秋天的诗", False, None),               # 9 characters = 9 words
    ("写首诗", False, "<= 3 words"),
])
def test_length_filter(inst, faithful, reason):
    assert F.check_length(inst, faithful) == reason


@pytest.mark.parametrize("inst, reason", [
    ("Draw a cat on the page", "keyword 'draw'"),
    ("Describe the IMAGES below in detail", "keyword 'images'"),
    ("Explain how a hash map works", "keyword 'map'"),
    ("Explain the mapping between keys and values", None),       # whole words only
    ("Tell me how to go to the station", "keyword 'go to'"),
    ("Summarize the plot of Hamlet", "keyword 'plot'"),          # the reference drops this too
    ("Write a song about music", None),                          # music is Alpaca's, not Self-Instruct's
])
def test_blacklist_filter_english(inst, reason):
    assert F.check_blacklist(inst) == reason


def test_blacklist_alpaca_and_chinese():
    assert F.check_blacklist("Write a song about music", F.ALPACA_BLACKLIST) == "keyword 'music'"
    assert F.check_blacklist("根据这张图片写一段描述") == "keyword '图片'"
    assert F.check_blacklist("根据这张图片写一段描述", faithful=True) is None
    assert F.check_blacklist("把这段话翻译成英文") is None


def test_program_and_first_character_filters():
    assert F.check_program("Write a program that sorts numbers") == "starts with 'write a program'"
    assert F.check_program("Write a Python function that sorts numbers") is None
    assert F.check_program("编写一个程序计算阶乘") == "starts with 'write a program'"
    assert F.check_program("编写一个程序计算阶乘", faithful=True) is None
    assert F.check_first_char('"Hello" means what in French?') == "starts with punctuation"
    assert F.check_first_char("「春晓」这首诗表达了什么？") == "starts with punctuation"
    assert F.check_first_char("😀 Explain this emoji") == "starts with punctuation"   # symbol
    assert F.check_first_char("写一首诗") is None
    assert F.check_first_char("写一首诗", faithful=True) == "starts with non-ASCII"
    assert F.check_first_char("Émile Zola wrote which novels?", faithful=True) == "starts with non-ASCII"
    assert F.check_first_char("Émile Zola wrote which novels?") is None


def test_normalize_faithful_capitalize_lowercases_the_rest():
    assert F.normalize_instruction("explain  NASA's\nmission", faithful=True) == "Explain nasa's mission"
    assert F.normalize_instruction("explain  NASA's\nmission") == "Explain NASA's mission"


def test_faithful_drops_every_chinese_seed_instruction_default_keeps_most():
    zh = [t.instruction for t in load_seed_tasks(language="zh")]
    faithful = [F.first_failure(s, faithful=True) for s in zh]
    default = [F.first_failure(s) for s in zh]
    assert all(r is not None for r in faithful)
    assert sum(r is None for r in default) >= 0.9 * len(zh)


# ---- prompts and parsers ----------------------------------------------------------------------

def test_instruction_prompt_numbered_and_open():
    prompt = P.encode_instruction_prompt([f"Task {i}:" for i in range(8)])
    assert prompt.startswith(P.INSTRUCTION_HEADER)
    assert [int(n) for n in re.findall(r"^(\d+)\. ", prompt, flags=re.M)] == list(range(1, 9))
    assert prompt.endswith("\n9.") and "Task 0\n" in prompt           # trailing colon stripped


def test_sample_demos_six_human_two_machine():
    import random
    seeds, machine = [f"s{i}" for i in range(20)], [f"m{i}" for i in range(5)]
    demos = sample_demos(random.Random(0), seeds, machine)
    assert len(demos) == 8 and sum(d.startswith("m") for d in demos) == 2
    assert len(set(demos)) == 8
    assert sum(d.startswith("m") for d in sample_demos(random.Random(0), seeds, [])) == 0
    assert len(sample_demos(random.Random(0), seeds, machine[:1])) == 8


def test_parse_instruction_completion():
    text = " Write a haiku about rain\n10. Explain why the sky is blue\n11.List three fruits\n\n"
    assert P.parse_instruction_completion(text, faithful=True)[:2] == ["Write a haiku about rain",
                                                                      "Explain why the sky is blue 11.List three fruits"]
    assert P.parse_instruction_completion(text)[:3] == ["Write a haiku about rain", "Explain why the sky is blue",
                                                        "List three fruits"]
    assert P.parse_instruction_completion(" 写一首诗\n10、解释光合作用")[:2] == ["写一首诗", "解释光合作用"]


def test_instance_prompts_output_first_for_classification():
    pool = load_seed_tasks()
    clf = P.encode_instance_prompt("Classify the email as spam or not spam.", True, pool)
    gen = P.encode_instance_prompt("Write a limerick about a cat.", False, pool)
    assert clf.startswith(P.OUTPUT_FIRST_HEADER) and gen.startswith(P.INPUT_FIRST_HEADER)
    body = clf[len(P.OUTPUT_FIRST_HEADER):]
    first_label, first_input = body.index("Class label:"), body.index("Input:")
    assert first_label < first_input                                   # the label comes before its input
    assert "Class label:" not in gen and "Output:" in gen
    assert clf.endswith("Task: Classify the email as spam or not spam.\n")
    zh = P.encode_instance_prompt("把下面的句子翻译成英文。", False, pool)
    assert re.search("[\u4e00-\u9fff]", zh.split("\n\n")[1])            # Chinese demos for a Chinese task


def test_classification_prompt_and_answer():
    prompt = P.encode_classification_prompt("Is this review positive or negative?", load_seed_tasks())
    assert prompt.endswith("Task: Is this review positive or negative?\nIs it classification?")
    assert prompt.count("Is it classification? Yes") == 4 and prompt.count("Is it classification? No") == 4
    assert P.parse_classification_answer(" Yes") and not P.parse_classification_answer(" No")
    assert P.parse_classification_answer(" 是", faithful=False) and not P.parse_classification_answer(" 是", faithful=True)
    assert not P.parse_classification_answer(" Yes.", faithful=True) and P.parse_classification_answer(" Yes.")


def test_parse_instances():
    raw = "Example 1\nInput: 2 + 2\nOutput: 4\nExample 2\nInput: 3 + 3\nOutput: 6\nExample 3\nInput: x\nOutput:"
    assert P.parse_generation_instances(raw) == [("2 + 2", "4"), ("3 + 3", "6")]      # cut-off one dropped
    assert P.parse_generation_instances("Output: just the answer") == [("", "just the answer")]
    assert P.parse_generation_instances("no structure at all") == []
    conflict = "Example 1\nInput: a\nOutput: 1\nExample 2\nInput: a\nOutput: 2"
    assert P.parse_generation_instances(conflict) == []                # same input, two outputs: none
    dup = "Example 1\nInput: a\nOutput: 1\nExample 2\nInput: a\nOutput: 1"
    assert P.parse_generation_instances(dup) == [("a", "1")]
    zh = "Example 1\nInput：你好\nOutput：Hello"
    assert P.parse_generation_instances(zh) == [("你好", "Hello")]
    # the reference knows only ':' -- the whole example becomes the output of an empty input
    assert P.parse_generation_instances(zh, faithful=True) == [("", "Input：你好\nOutput：Hello")]
    clf = "Class label: spam\nInput: WIN A PRIZE NOW\nClass label: not spam\nInput: Lunch at noon?\n"
    assert P.parse_classification_instances(clf) == [("WIN A PRIZE NOW", "spam"), ("Lunch at noon?", "not spam")]
    assert P.parse_classification_instances("spam") == []


def test_alpaca_prompt_and_parse():
    seeds = load_seed_tasks()[:3]
    prompt = P.encode_alpaca_prompt(seeds)
    assert prompt.endswith("###\n4. Instruction:") and prompt.count("###") == 4
    text = (" Give two synonyms for happy.\n4. Input:\n<noinput>\n4. Output:\nglad, cheerful\n###\n"
            "5. Instruction: Sort the numbers.\n5. Input:\n3, 1, 2\n5. Output:\n1, 2, 3\n###\n6. Instruction: broken")
    assert P.parse_alpaca_completion(text, 3) == [("Give two synonyms for happy.", "", "glad, cheerful"),
                                                  ("Sort the numbers.", "3, 1, 2", "1, 2, 3")]


def test_magpie_prefix():
    assert P.pre_query_prefix(ScriptedLLM(lambda p: "").chat_prompt) == "<|user|>"
    template = lambda conv: f"<|im_start|>system\nBe kind<|im_end|>\n<|im_start|>user\n{conv[0]['content']}<|im_end|>\n"
    assert P.pre_query_prefix(template) == "<|im_start|>system\nBe kind<|im_end|>\n<|im_start|>user\n"


# ---- scripted end-to-end ---------------------------------------------------------------------

NEW_TASKS = [
    "Write a limerick about a cat who loves the rain",
    "Classify the tweet below as angry or calm",
    "写一首关于秋天落叶的短诗，要求押韵",
    "写一首关于秋天落叶的小诗，要求押韵",
    "Explain in simple words why leaves change colour in autumn",
    "List five tips for staying focused while studying at home",
    "Write a program that prints the first ten primes",
    "Suggest three names for a bakery that sells only bread",
    "Translate the following sentence into Spanish please",
    "Give an example of a metaphor used in everyday speech",
    "Describe the water cycle to a ten year old child",
    "Rewrite the sentence so that it uses the passive voice",
    "Summarize the main argument of the paragraph in one sentence",
    "Convert the temperature from Celsius to Fahrenheit step by step",
    "Name four animals that live in the Arctic and explain how",
]


BLACKLISTED = "Draw a picture of a mountain at sunrise"


def scripted_model(prompt: str) -> str:
    """Deterministic fake model: numbered lists, Yes/No, instances in the reference formats."""
    if prompt.endswith(P.CLF_QUESTION):
        task = prompt.rsplit("Task:", 1)[1]
        return " Yes" if "Classify" in task else " No"
    if prompt.startswith(P.OUTPUT_FIRST_HEADER):
        return "Class label: positive\nInput: A joy from start to end.\nClass label: negative\nInput: Two hours lost."
    if prompt.startswith(P.INPUT_FIRST_HEADER):
        if "bakery" in prompt.rsplit("Task:", 1)[1]:
            return "I cannot help with that."                         # malformed: no Output:
        return "Example 1\nInput: first case\nOutput: first answer\nExample 2\nInput: second case\nOutput: second answer"
    if prompt.startswith(P.INSTRUCTION_HEADER):
        k = sum(map(ord, prompt)) % len(NEW_TASKS)                    # depends on the demos in the prompt
        picks = [NEW_TASKS[(k + j) % len(NEW_TASKS)] for j in range(4)] + [BLACKLISTED]
        if k % 7 == 0:
            return ""                                                 # malformed: nothing at all
        if k % 7 == 1:
            return "!!! <unk> <unk> <unk> <unk>"                                # malformed: garbage
        return " " + "\n".join(f"{9 + j}. {p}" if j else p for j, p in enumerate(picks)) + "\n\n"
    raise AssertionError(f"unexpected prompt: {prompt[:80]!r}")


def test_scripted_end_to_end(tmp_path):
    llm = ScriptedLLM(scripted_model)
    result = self_instruct(llm, tmp_path / "si.jsonl", 11, batch_size=4, progress=False, max_rounds=40)
    out, pool_path, rounds_path = sidecar_paths(tmp_path / "si.jsonl")
    assert validate_file(out).ok
    records = [json.loads(line) for line in out.read_text().splitlines()]
    pool = [json.loads(line) for line in pool_path.read_text().splitlines()]
    assert result.records == len(records) > 0 and result.machine_instructions == len(pool) == 11
    assert len({r["id"] for r in records}) == len(records)
    kept = {row["instruction"] for row in pool}
    dropped = {"Write a program that prints the first ten primes",                # program
               "List five tips for staying focused while studying at home",       # ROUGE-L 0.74 with a seed
               "Convert the temperature from Celsius to Fahrenheit step by step"} # ROUGE-L 0.82 with a seed
    zh = {"写一首关于秋天落叶的短诗，要求押韵", "写一首关于秋天落叶的小诗，要求押韵"}
    assert len(kept & zh) == 1                                # Chinese kept, its near-duplicate caught
    assert kept - zh == set(NEW_TASKS) - zh - dropped
    table = {row["filter"]: row for row in result.funnel.table()}
    assert BLACKLISTED not in kept
    assert table["blacklist"]["reasons"] == {"keyword 'picture'": table["blacklist"]["dropped"]}
    assert table["blacklist"]["dropped"] >= 1
    assert {x["instruction"] for x in result.rejected if x["filter"] == "blacklist"} == {BLACKLISTED}
    assert len(result.rejected) == sum(row["dropped"] for name, row in table.items()
                                       if name not in ("model output", "instances"))
    assert table["first character"]["reasons"].get("starts with punctuation", 0) >= 1   # the garbage
    assert table["model output"]["reasons"].get("no instruction in output", 0) >= 1   # garbage counted
    assert table["instances"]["reasons"].get("no valid instance", 0) >= 1           # the bakery task
    for name, row in table.items():
        if name not in ("model output",):
            assert row["in"] == row["kept"] + row["dropped"]
    clf = [r for r in records if r["instruction"].startswith("Classify")]
    assert clf and all(r["is_classification"] and r["provenance"]["instance_order"] == "output-first" for r in clf)
    assert {r["output"] for r in clf} == {"positive", "negative"}
    sampling = records[0]["provenance"]["sampling"]
    assert sampling["instruction"]["temperature"] == 0.7 and sampling["instruction"]["top_p"] == 0.5
    assert records[0]["provenance"]["model"] == "scripted"
    # prompts after round 0 show 2 machine instructions and 6 seeds
    later = [p for p in llm.calls if p.startswith(P.INSTRUCTION_HEADER)][4:]
    seeds = {t.instruction for t in load_seed_tasks()}
    for prompt in later:
        listed = re.findall(r"^\d+\. (.*)$", prompt, flags=re.M)
        assert len(listed) == 8 and sum(s in seeds for s in listed) == 6


def test_faithful_run_drops_chinese(tmp_path):
    result = self_instruct(ScriptedLLM(scripted_model), tmp_path / "f.jsonl", 11, batch_size=4, progress=False,
                           max_rounds=15, faithful=True)
    pool = [json.loads(line)["instruction"] for line in sidecar_paths(tmp_path / "f.jsonl")[1].read_text().splitlines()]
    assert not any(re.search("[\u4e00-\u9fff]", p) for p in pool)
    length = {row["filter"]: row for row in result.funnel.table()}["length"]
    assert length["reasons"].get("<= 3 words", 0) >= 2       # both Chinese ones: "one word" each
    assert result.machine_instructions == 10                 # everything else as in the default run


def test_alpaca_and_magpie_variants(tmp_path):
    def alpaca_model(prompt):
        n = prompt.count("Sort")  # varies with the demos
        return (f" Give {n + 2} synonyms for the word happy please.\n4. Input:\n<noinput>\n4. Output:\nglad, cheerful\n"
                "###\n5. Instruction: Sort the numbers from small to large.\n5. Input:\n3, 1, 2\n5. Output:\n1, 2, 3\n###")
    result = self_instruct(ScriptedLLM(alpaca_model), tmp_path / "a.jsonl", 2, method="alpaca", batch_size=2,
                           progress=False, max_rounds=3)
    records = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert validate_file(tmp_path / "a.jsonl").ok and result.machine_instructions >= 2
    assert {"Sort the numbers from small to large.": "3, 1, 2"}.items() <= {r["instruction"]: r["input"] for r in records}.items()
    assert any(r["input"] == "" for r in records)                               # <noinput>
    assert records[0]["provenance"]["sampling"]["instruction"]["temperature"] == 1.0

    queries = iter([f"How do I bake bread number {i} at home with my kids?" if i % 2 else f"写一份第{i}次家庭旅行的行李清单"
                    for i in range(100)])
    def magpie_model(prompt):
        if prompt == "<|user|>":
            return next(queries)
        return "Here is an answer."
    result = self_instruct(ScriptedLLM(magpie_model), tmp_path / "m.jsonl", 3, method="magpie", batch_size=4,
                           progress=False, max_rounds=2)
    records = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert validate_file(tmp_path / "m.jsonl").ok
    assert records and all(r["output"] == "Here is an answer." for r in records)
    assert any(re.search("[\u4e00-\u9fff]", r["instruction"]) for r in records)


class CutLLM(ScriptedLLM):
    """A scripted model that says "length" (ran out of max_new_tokens) for the prompts ``cut(prompt)`` picks."""

    def __init__(self, script, cut):
        super().__init__(script)
        self.cut = cut

    def _generate_finish(self, prompts, **kwargs):
        texts = self._generate(prompts, **kwargs)
        return [(text, "length" if self.cut(p) else "stop") for p, text in zip(prompts, texts)]


CUT_LIST = (" Name four animals that live in the Arctic and explain how\n"
            "10. Describe the water cycle to a ten year old child\n11. Explain why the sky looks")
CUT_EXAMPLES = "Example 1\nInput: first case\nOutput: first answer\nExample 2\nInput: second case\nOutput: second answer" \
               "\nExample 3\nInput: third case\nOutput: thi"


def cut_model(prompt: str) -> str:
    """Every instruction list and every instance output runs out of tokens (no stop string in them)."""
    if prompt.endswith(P.CLF_QUESTION):
        return " No"
    if prompt.startswith(P.INPUT_FIRST_HEADER):
        return CUT_EXAMPLES
    assert prompt.startswith(P.INSTRUCTION_HEADER), prompt[:80]
    return CUT_LIST


@pytest.mark.parametrize("drop, faithful", [(True, False), (False, False), (True, True)])
def test_output_cut_at_max_new_tokens_is_dropped_and_counted(tmp_path, drop, faithful):
    llm = CutLLM(cut_model, cut=lambda p: not p.endswith(P.CLF_QUESTION))
    result = self_instruct(llm, tmp_path / "c.jsonl", 10, batch_size=1, progress=False, max_rounds=1,
                           drop_truncated=drop, faithful=faithful)
    out, pool_path, _ = sidecar_paths(tmp_path / "c.jsonl")
    pool = [json.loads(line)["instruction"] for line in pool_path.read_text().splitlines()]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    table = {row["filter"]: row for row in result.funnel.table()}
    complete = ["Name four animals that live in the Arctic and explain how",
                "Describe the water cycle to a ten year old child"]
    if not drop:   # the fragment passes every form check; three examples per task, the third one cut
        assert pool == complete + ["Explain why the sky looks"] and "complete" not in table
        assert len(records) == 9 and sum(r["output"] == "thi" for r in records) == 3
        return
    cut = 3 if faithful else 1     # the reference drops the whole response, the default only its last piece
    assert table["complete"] == {"filter": "complete", "in": 3, "kept": 3 - cut, "dropped": cut,
                                 "reasons": {"output cut at max_new_tokens": cut}}
    assert {x["instruction"] for x in result.rejected if x["filter"] == "complete"} >= {"Explain why the sky looks"}
    assert pool == ([] if faithful else complete)
    assert all(r["output"] != "thi" for r in records) and len(records) == 2 * len(pool)
    if not faithful:   # the last example of each cut instance output is dropped, and counted
        assert table["complete example"] == {"filter": "complete example", "in": 6, "kept": 4, "dropped": 2,
                                             "reasons": {"output cut at max_new_tokens": 2}}


def test_nothing_cut_nothing_dropped(tmp_path):
    result = self_instruct(CutLLM(cut_model, cut=lambda p: False), tmp_path / "n.jsonl", 10, batch_size=1,
                           progress=False, max_rounds=1)
    table = {row["filter"]: row for row in result.funnel.table()}
    assert table["complete"]["reasons"] == {} and table["complete"]["kept"] == 3
    assert table["complete example"] == {"filter": "complete example", "in": 9, "kept": 9, "dropped": 0, "reasons": {}}


def test_cut_alpaca_task_and_magpie_query_and_answer_are_dropped(tmp_path):
    done = (" Give synonyms for the word happy please.\n4. Input:\n<noinput>\n4. Output:\nglad, cheerful\n###\n"
            "5. Instruction: Sort the numbers from small to large.\n5. Input:\n3, 1, 2\n5. Output:\n1, 2")
    result = self_instruct(CutLLM(lambda p: done, cut=lambda p: True), tmp_path / "a.jsonl", 5, method="alpaca",
                           batch_size=1, progress=False, max_rounds=1)
    records = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [r["instruction"] for r in records] == ["Give synonyms for the word happy please."]
    assert {row["filter"]: row for row in result.funnel.table()}["complete"]["dropped"] == 1
    unparsed_tail = done.split("###")[0] + "###\n5. Instruction: Sort the num"   # the cut piece does not parse
    result = self_instruct(CutLLM(lambda p: unparsed_tail, cut=lambda p: True), tmp_path / "b.jsonl", 5,
                           method="alpaca", batch_size=1, progress=False, max_rounds=1)
    assert result.records == 1 and {row["filter"]: row for row in result.funnel.table()}["complete"]["dropped"] == 0

    queries = iter(["How do I bake bread at home with my kids?", "Plan a three day trip to the mountains in May"])
    first_query_cut = iter([True, False])

    def magpie_model(prompt):
        return next(queries) if prompt == "<|user|>" else "An answer that goes on and"
    llm = CutLLM(magpie_model, cut=lambda p: next(first_query_cut) if p == "<|user|>" else "mountains" in p)
    result = self_instruct(llm, tmp_path / "m.jsonl", 5, method="magpie", batch_size=2, progress=False, max_rounds=1)
    table = {row["filter"]: row for row in result.funnel.table()}
    assert table["complete"]["reasons"] == {"output cut at max_new_tokens": 1}            # the cut query
    assert [x["instruction"] for x in result.rejected] == ["How do I bake bread at home with my kids?"]
    assert table["complete example"]["reasons"] == {"output cut at max_new_tokens": 1}    # the other one's answer
    assert result.records == 0 and table["instances"]["reasons"] == {"no valid instance": 1}


def test_resume_with_other_settings_is_refused(tmp_path):
    self_instruct(ScriptedLLM(scripted_model), tmp_path / "x.jsonl", 2, batch_size=2, progress=False, max_rounds=2)
    with pytest.raises(ValueError, match="different settings"):
        self_instruct(ScriptedLLM(scripted_model), tmp_path / "x.jsonl", 4, batch_size=2, progress=False,
                      faithful=True)
    with pytest.raises(ValueError, match="different settings"):   # dropping cut text or not changes the data
        self_instruct(ScriptedLLM(scripted_model), tmp_path / "x.jsonl", 4, batch_size=2, progress=False,
                      drop_truncated=False)
    assert "drop_truncated" not in SelfInstructConfig(drop_truncated=False).identity()   # logs from before the option


def test_any_seed_file_in_self_instruct_format(tmp_path):
    path = tmp_path / "seeds.jsonl"
    rows = [{"id": f"t{i}", "name": f"t{i}", "instruction": f"Explain idea number {i} to a child in two sentences",
             "instances": [{"input": "", "output": "An answer."}], "is_classification": False} for i in range(10)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    seeds = load_seed_pool(path)
    assert len(seeds) == 10 and seeds[3].id == "t3"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(rows[0]) + "\n" + json.dumps({"instruction": "x", "instances": "none"}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:2.*instances"):
        load_seed_pool(bad)


# ---- resume after a real kill -9 ---------------------------------------------------------------

CHILD = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    from test_self_instruct import scripted_model
    from instructlib.models.llm import ScriptedLLM
    from instructlib.generate.self_instruct.loop import self_instruct

    def slow(prompt):
        time.sleep({delay})
        return scripted_model(prompt)

    self_instruct(ScriptedLLM(slow), sys.argv[1], 14, batch_size=3, progress=False, max_rounds=10)
""")


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _run_until_killed(out: Path, kill_after_lines: int) -> int:
    """Start the run in a child process, SIGKILL it once the files hold that many lines; lines written."""
    code = CHILD.format(tests=str(Path(__file__).parent), delay=0.01)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", code, str(out)], env=env)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if sum(len(_rows(p)) for p in sidecar_paths(out)) >= kill_after_lines:
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the child finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    return sum(len(_rows(p)) for p in sidecar_paths(out))


def _finish(out: Path) -> None:
    """The same run as the child's, in this process (no delay), resuming whatever is in ``out``."""
    self_instruct(ScriptedLLM(scripted_model), out, 14, batch_size=3, progress=False, max_rounds=10)


def test_resume_after_kill_minus_9_gives_the_uninterrupted_result(tmp_path):
    reference = tmp_path / "ref.jsonl"
    _finish(reference)
    assert len(_rows(reference)) >= 20
    for kills, after in enumerate((4, 17)):
        out = tmp_path / f"killed{kills}.jsonl"
        partial = _run_until_killed(out, after)     # killed mid-run (between or inside a stage's writes) ...
        _finish(out)                                # ... and rerun to the end
        for got, want in zip(sidecar_paths(out), sidecar_paths(reference)):
            g, w = _rows(got), _rows(want)
            for row in g + w:
                row.pop("generation_seconds", None)
            assert g == w, f"{got.name} differs after a kill at {partial} lines"
        assert validate_file(out).ok


# ---- CLI -----------------------------------------------------------------------------------------

def test_cli_runs_and_prints_funnel(tmp_path, monkeypatch, capsys):
    import instructlib.models as models
    from instructlib.cli import main

    monkeypatch.setattr(models, "load_llm", lambda name, **kw: ScriptedLLM(scripted_model))
    out = tmp_path / "cli.jsonl"
    status = main(["self-instruct", "--num-instructions", "4", "--out", str(out), "--batch-size", "3",
                   "--max-rounds", "5"])
    printed = capsys.readouterr().out
    assert status == 0 and "ROUGE-L <= 0.7" in printed and "machine instructions" in printed
    assert validate_file(out).ok


def test_cli_bad_seed_file_is_a_clear_error(tmp_path, capsys):
    from instructlib.cli import main

    bad = tmp_path / "seeds.jsonl"
    bad.write_text('{"instruction": "Say hi", "instances": []}\n')
    status = main(["self-instruct", "--seeds", str(bad), "--num-instructions", "4", "--out", str(tmp_path / "o.jsonl")])
    err = capsys.readouterr().err
    assert status == 2 and "seeds.jsonl:1" in err and "instances" in err and "Traceback" not in err
    missing = main(["self-instruct", "--seeds", str(tmp_path / "nope.jsonl"), "--num-instructions", "4",
                    "--out", str(tmp_path / "o.jsonl")])
    assert missing == 2
