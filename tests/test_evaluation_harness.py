"""The harness: metrics through the LLM interface, hand-computed perplexity, cache hits on rerun, the CLI."""
import json
import math
import uuid

import pytest
import torch

from instructlib.data.verifiable import make_examples
from instructlib.evaluation import evaluate, judge_metric
from instructlib.evaluation.cache import model_fingerprint
from instructlib.evaluation.suite import as_item, perplexity_texts
from instructlib.models import LLM, ScriptedLLM, load_tokenizer
from instructlib.nn.gpt import GPTConfig, TinyGPT


def oracle(examples, wrong_every=3):
    """A scripted model answering every ``wrong_every``-th item wrongly (as it would with markdown)."""
    answers = {}
    for k, ex in enumerate(examples):
        answers[ex.record.instruction + "\n\n" + ex.record.input if ex.record.input else ex.record.instruction] = \
            f"**{ex.record.output}**" if k % wrong_every == 0 else ex.record.output
    return ScriptedLLM(lambda prompt: next(v for q, v in answers.items() if f"<|user|>{q}\n" in prompt), name="oracle")


@pytest.fixture()
def examples():
    return make_examples("test", 2, seed=0)


def test_metrics_through_the_interface_and_cache_hit_on_rerun(examples, tmp_path):
    llm = oracle(examples)
    first = evaluate({"oracle": llm}, {"test": examples}, ["em", "strict", "loose", "rougeL"],
                     cache_root=tmp_path, progress=False)
    n = len(examples)
    wrong = len(range(0, n, 3))
    rows = {r["metric"]: r for r in first.rows}
    assert rows["strict"]["value"] == pytest.approx(1 - wrong / n)
    assert rows["loose"]["value"] == 1.0 and rows["em"]["value"] == 1.0  # SuperNI drops the asterisks too
    assert rows["strict"]["low"] <= rows["strict"]["value"] <= rows["strict"]["high"]
    assert all(r["n"] == n and r["excluded"] == 0 for r in first.rows)
    assert len(llm.calls) == n and first.cache_misses == 5 and first.cache_hits == 0

    again = evaluate({"oracle": llm}, {"test": examples}, ["em", "strict", "loose", "rougeL"],
                     cache_root=tmp_path, progress=False)
    assert len(llm.calls) == n, "a rerun must not generate again"
    assert again.cache_hits == 5 and again.cache_misses == 0
    assert again.rows == first.rows and again.predictions == first.predictions

    other = evaluate({"oracle": llm}, {"test": examples[:-1]}, ["em"], cache_root=tmp_path, progress=False)
    assert other.cache_misses == 2 and len(llm.calls) == 2 * n - 1, "other data: generate again"
    table = again.to_pandas()
    assert list(table.columns) == ["model", "data", "metric", "value", "low", "high", "n", "excluded"]
    assert again.pivot().shape == (1, 4)


def test_cache_disabled_and_a_corrupt_cache_file_recompute(examples, tmp_path):
    llm = oracle(examples)
    evaluate([llm], {"test": examples}, ["em"], cache_root=tmp_path, progress=False)
    for path in tmp_path.rglob("*.json"):
        path.write_text("{not json")
    t = evaluate([llm], {"test": examples}, ["em"], cache_root=tmp_path, progress=False)
    assert t.cache_misses == 2 and t.rows[0]["value"] == 1.0
    evaluate([llm], {"test": examples}, ["em"], cache=False, progress=False)
    assert len(llm.calls) == 3 * len(examples)


def test_fingerprint_follows_the_weights():
    torch.manual_seed(0)
    model = TinyGPT(GPTConfig(vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=8))

    class Holder:
        name, tokenizer = "m", None

    a = Holder(); a.model = model
    before = model_fingerprint(a)
    assert before == model_fingerprint(a)
    with torch.no_grad():
        next(model.parameters())[0, 0] += 1e-3
    assert model_fingerprint(a) != before
    assert model_fingerprint(ScriptedLLM(lambda p: "", name="x")) == "name:x"


@pytest.fixture(scope="module")
def tiny_llm():
    tok = load_tokenizer("tinygpt")
    torch.manual_seed(0)
    return LLM.wrap(TinyGPT(GPTConfig(vocab_size=len(tok), block_size=64, n_layer=2, n_head=2, n_embd=32)), tok,
                    name="tiny-random")


def test_perplexity_equals_a_hand_computed_one(tiny_llm, tmp_path, one_thread):
    texts = ["Once upon a time there was a cat", "the capital of France is Paris", "hi"]
    table = evaluate({"tiny": tiny_llm}, {"text": texts}, ["ppl"], cache_root=tmp_path, progress=False)
    tok, model = tiny_llm.tokenizer, tiny_llm.model
    total, count = 0.0, 0
    for text in texts:
        ids = [tok.eos_token_id] + tok(text, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids])).float(), -1)[0]
        total -= sum(logp[t, ids[t + 1]].item() for t in range(len(ids) - 1))
        count += len(ids) - 1
    row = table.rows[0]
    assert row["value"] == pytest.approx(math.exp(total / count), rel=1e-4)
    assert row["low"] <= row["value"] <= row["high"] and row["n"] == 3
    assert table.predictions == {}  # perplexity generates nothing
    vocab = len(tok)
    assert 0.3 * vocab < row["value"] < 3 * vocab  # an untrained model is about as unsure as a uniform one


def test_perplexity_of_records_scores_the_answer_given_the_prompt(tiny_llm, tmp_path, one_thread):
    examples = make_examples("test", 1, seed=0)[:4]
    table = evaluate({"tiny": tiny_llm}, {"t": examples}, ["ppl"], cache_root=tmp_path, progress=False)
    total, count = 0.0, 0
    for ex in examples:
        prompt = tiny_llm.chat_prompt(as_item(ex).chat())
        (full_nll, full_n), (p_nll, p_n) = tiny_llm.nll([prompt + ex.record.output, prompt])
        total, count = total + full_nll - p_nll, count + full_n - p_n
    assert 0 < count < 60  # only the answers' tokens are scored
    assert table.rows[0]["value"] == pytest.approx(math.exp(total / count), rel=1e-4)  # batched vs one by one
    item = as_item(examples[0])
    assert perplexity_texts(item, tiny_llm)[1].endswith(item.references[0])
    assert perplexity_texts(as_item("plain text"), tiny_llm) == ("", "plain text")


def test_generation_through_a_real_model_is_batched_and_cut_at_newline(tiny_llm, tmp_path, one_thread):
    examples = make_examples("test", 1, seed=0)[:5]
    table = evaluate({"tiny": tiny_llm}, {"t": examples}, ["em", "bleu", "chrf"], max_new_tokens=8, batch_size=2,
                     cache_root=tmp_path, progress=False)
    preds = table.predictions[("tiny", "t")]
    assert len(preds) == 5 and all("\n" not in p for p in preds)
    direct = tiny_llm.chat([as_item(e).chat() for e in examples], max_new_tokens=8, stop=("\n",), progress=False)
    assert preds == [p.strip() for p in direct]


def test_judge_metric_counts_unparseable_verdicts(examples, tmp_path):
    llm = oracle(examples)
    replies = iter(["Rating: [[8]]", "no idea"] * len(examples))
    judge = ScriptedLLM(lambda prompt: next(replies), name="judge")
    table = evaluate({"oracle": llm}, {"test": examples}, [judge_metric(judge)], cache_root=tmp_path, progress=False)
    row = table.rows[0]
    assert row["metric"] == "judge" and row["excluded"] == len(examples) // 2 and row["value"] == 8.0
    assert row["n"] == len(examples) - row["excluded"]


def test_cli_evaluates_a_file_and_reports_bad_input(tmp_path, capsys):
    from instructlib.cli import main

    data = tmp_path / "d.jsonl"  # an instruction seen nowhere else, so the first run cannot hit the cache
    data.write_text(json.dumps({"instruction": f"Add the two numbers ({uuid.uuid4().hex}).", "input": "2 3",
                                "output": "5"}) + "\n")
    out = tmp_path / "t.csv"
    assert main(["evaluate", "--model", "tinygpt", "--data", str(data), "--metrics", "em,rougeL,ppl",
                 "--out", str(out), "--quiet", "--max-new-tokens", "4"]) == 0
    text = capsys.readouterr().out
    assert "rougeL" in text and "cache: 0 hits" in text
    assert out.read_text().splitlines()[0] == "model,data,metric,value,low,high,n,excluded"
    assert main(["evaluate", "--model", "tinygpt", "--data", str(data), "--metrics", "em", "--quiet",
                 "--max-new-tokens", "4"]) == 0
    assert "cache: 2 hits, 0 misses" in capsys.readouterr().out
    assert main(["evaluate", "--model", "tinygpt", "--data", "verifiable:heldout", "--n-per-family", "1",
                 "--metrics", "strict,loose", "--quiet", "--max-new-tokens", "4", "--no-cache"]) == 0
    assert "verifiable:heldout" in capsys.readouterr().out
    assert main(["evaluate", "--model", "tinygpt", "--data", "verifiable:train"]) == 2
    assert "verifiable:test or verifiable:heldout" in capsys.readouterr().err

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"instruction": "x", "output": "y"}) + "\n{broken\n")
    assert main(["evaluate", "--model", "tinygpt", "--data", str(bad), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2" in err and "Traceback" not in err
    assert main(["evaluate", "--model", "tinygpt", "--data", str(data), "--metrics", "em,bogus"]) == 2
    assert "bogus" in capsys.readouterr().err
    assert main(["evaluate", "--model", "no-such-model-dir", "--data", str(data), "--quiet"]) == 2
    assert "--model no-such-model-dir" in capsys.readouterr().err
