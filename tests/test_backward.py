"""Chapter 07: instruction back-translation (Humpback): reversed records, generation, rating parser, curation."""
import math

import pytest

from instructlib.data.records import Record
from instructlib.generate.backtranslation.backward import (BACKWARD_INSTRUCTION, backward_record, curation_precision_recall,
                                           generate_instructions, instruction_family, parse_rating, rate,
                                           rating_prompt)
from instructlib.models.llm import ScriptedLLM


def test_backward_record_swaps_instruction_and_output():
    r = backward_record(Record("Add the two numbers.", "2 3", "5"))
    assert r == Record(BACKWARD_INSTRUCTION, "Input: 2 3\nOutput: 5", "Add the two numbers.")
    assert backward_record(Record("Write a haiku.", "", "Snow on the pine.")).input == "Output: Snow on the pine."


@pytest.mark.parametrize("text, rating", [
    ("Score: 4", 4), ("score = 4/5", 4), ("**Rating:** 3", 3), ("5", 5), ("I'd give it 4 out of 5.", 4),
    ("Score: 2\nScore: 2", 2), ("The rating is 1 because it is empty.", 1),
])
def test_rating_parser_reads_well_formed_answers(text, rating):
    assert parse_rating(text) == rating


@pytest.mark.parametrize("text", ["", "great", "Score: 7", "3 or 4", "between 2 and 5", "Score: 4, no, Score: 2",
                                  "Rating: 10", "4.5", "the output 123 is fine"])
def test_rating_parser_refuses_malformed_or_ambiguous_answers(text):
    assert parse_rating(text) is None


def test_rate_counts_unparseable_answers_instead_of_dropping_them():
    answers = iter(["Score: 5", "I cannot rate this.", "Score: 2", "3 or 4"])
    llm = ScriptedLLM(lambda prompt: next(answers))
    rows = [{"instruction": f"i{k}", "input": "", "output": "o"} for k in range(4)]
    counts = rate(llm, rows)
    assert counts == {"rated": 2, "unparseable": 2}
    assert [r["rating"] for r in rows] == [5, None, 2, None] and rows[1]["rating_text"] == "I cannot rate this."
    assert "Instruction: i0" in llm.calls[0] and "Input: (none)" in llm.calls[0]


def test_generate_instructions_prompts_with_the_reversed_record():
    class Tok:
        chat_template = "x"

        def apply_chat_template(self, messages, tokenize, add_generation_prompt):
            return messages[0]["content"] + " ->"

    llm = ScriptedLLM(lambda p: "Add the two numbers.\nmore text")
    llm.tokenizer = Tok()
    rows = generate_instructions(llm, [Record("ignored", "2 3", "5"), Record("", "4 4", "8")], n=2)
    assert [r["id"] for r in rows] == ["b0/0", "b0/1", "b1/0", "b1/1"]
    assert rows[0]["instruction"] == "Add the two numbers." and rows[2]["output"] == "8"
    assert llm.calls[0] == BACKWARD_INSTRUCTION + "\n\nInput: 2 3\nOutput: 5 ->" and "ignored" not in llm.calls[0]


def test_instruction_family_and_curation_precision_recall():
    assert instruction_family("Add the two numbers together.") == "add"
    assert instruction_family("Sort the numbers in ascending order.") == "sort_numbers"
    assert instruction_family("Write a poem about autumn leaves.") is None
    rows = [{"rating": 5, "correct": True}, {"rating": 4, "correct": False}, {"rating": 2, "correct": True},
            {"rating": None, "correct": True}, {"rating": 1, "correct": False}]
    pr = curation_precision_recall(rows, threshold=4)
    assert pr["kept"] == 2 and pr["precision"] == 0.5 and pr["recall"] == pytest.approx(1 / 3)
    assert pr["unparseable"] == 1
    assert math.isnan(curation_precision_recall(rows, threshold=6)["precision"])


def test_rating_prompt_states_the_rubric():
    text = rating_prompt({"instruction": "Add.", "input": "1 2", "output": "3"})[0]["content"]
    assert "from 1 to 5" in text and "Input: 1 2" in text and "Score: N" in text


def test_run_backward_resumes_without_duplicates(tmp_path, one_thread):
    import json

    from instructlib.data.verifiable import make_records
    from instructlib.generate.backtranslation.backward import run_backward

    from transformers import GPT2Config, GPT2LMHeadModel

    from instructlib.models import load_tokenizer

    # a tiny transformers model with room for a backward example (the ci TinyGPT has only 64 positions)
    tok = load_tokenizer("tinygpt")
    model_dir = tmp_path / "tiny-backward"
    tok.save_pretrained(model_dir)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=256, n_embd=32, n_layer=1, n_head=2,
                               eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)).save_pretrained(model_dir)
    train = make_records("train", 2, seed=0)
    unlabelled = make_records("test", 1, seed=0)  # 13 examples, one per family
    out = tmp_path / "humpback.jsonl"
    rater = ScriptedLLM(lambda p: "Score: 5" if "Output: " in p else "??")
    counts = run_backward(train, unlabelled[:5], out, model_name=str(model_dir), rater=rater, steps=2, chunk=2,
                          progress=False)
    assert counts == {"candidates": 5, "kept": 5, "unparseable": 0}
    first = out.read_text()
    with open(out, "a") as f:
        f.write('{"id": "u5", "instr')  # a torn line, as a kill -9 mid-write leaves it
    counts = run_backward(train, unlabelled, out, model_name=str(model_dir), rater=ScriptedLLM(["Score: 2", "no idea"]),
                          steps=2, progress=False)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert out.read_text().startswith(first) and [r["id"] for r in rows] == [f"u{i}" for i in range(13)]
    assert counts["candidates"] == 13 and counts["unparseable"] == 4 and counts["kept"] == 5


def test_backward_cli_reports_bad_input(tmp_path, capsys):
    from instructlib.cli import main

    bad = tmp_path / "seed.json"
    bad.write_text('[{"instruction": "", "output": "x"}]')
    assert main(["generate", "backward", "--train", str(bad), "--unlabelled", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "seed.json" in err and "instruction" in err and "Traceback" not in err
