"""The capstone code path: training sets by condition, one token budget, seeds, cached fine-tunes, summary."""
import math

import pytest

from instructlib.data.verifiable import make_examples
from instructlib.evaluation.capstone import Recipe, run_capstone, steps_for_budget, summarize_seeds
from instructlib.evaluation.harness import EvalTable


def test_steps_for_budget_equalises_tokens():
    short = [{"input_ids": [0] * 10}] * 4
    long = [{"input_ids": [0] * 40}] * 4
    assert steps_for_budget(short, 8, 8 * 10 * 100) == 100
    assert steps_for_budget(long, 8, 8 * 10 * 100) == 25     # 4x longer examples, 4x fewer steps
    assert steps_for_budget(long, 8, 1) == 1


def test_summary_uses_t_over_seeds_and_bootstrap_for_single_runs():
    rows = [{"model": "base", "data": "d", "metric": "strict", "value": 0.1, "low": 0.05, "high": 0.2, "n": 10,
             "excluded": 0}]
    rows += [{"model": f"a/seed{s}", "data": "d", "metric": "strict", "value": v, "low": 0, "high": 1, "n": 10,
              "excluded": 0} for s, v in enumerate([0.2, 0.3, 0.4])]
    summary = summarize_seeds(EvalTable(rows=rows), [{"condition": "a", "tokens": t} for t in (100, 110, 120)])
    base = summary[summary.condition == "base"].iloc[0]
    a = summary[summary.condition == "a"].iloc[0]
    assert (base["low"], base["high"], base["runs"]) == (0.05, 0.2, 1) and math.isnan(base["train_tokens"])
    assert a["mean"] == pytest.approx(0.3) and a["runs"] == 3 and a["train_tokens"] == 110
    assert a["high"] - a["mean"] == pytest.approx(4.302653 * 0.1 / math.sqrt(3), rel=1e-5)


def test_run_capstone_trains_each_condition_per_seed_and_caches(one_thread):
    hand = make_examples("train", 2, seed=0)
    more = hand + make_examples("train", 2, seed=1, phrasings="heldout")
    evals = {"heldout": make_examples("test", 1, seed=0, phrasings="heldout")[:6]}
    recipe = Recipe(steps=3, batch_size=4)
    table, summary, runs = run_capstone({"hand": hand, "more": more}, evals, seeds=(0, 1), recipe=recipe,
                                        metrics=["strict", "loose"], progress=False)
    assert [(r["condition"], r["seed"]) for r in runs] == [("hand", 0), ("hand", 1), ("more", 0), ("more", 1)]
    assert all(r["steps"] == r["steps_planned"] for r in runs)
    assert {r["model"] for r in table.rows} == {"base", "hand/seed0", "hand/seed1", "more/seed0", "more/seed1"}
    assert set(summary.condition) == {"base", "hand", "more"} and len(summary) == 3 * 2
    assert (summary[summary.condition != "base"].runs == 2).all()
    again = run_capstone({"hand": hand}, evals, seeds=(0,), recipe=recipe, metrics=["strict"], progress=False)
    assert again[2][0] == runs[0], "a rerun loads the cached fine-tune (same meta) instead of training"
    assert again[0].cache_misses == 0
    with pytest.raises(ValueError):
        run_capstone({}, evals)


def test_capstone_fine_tunes_are_runs_of_the_one_run_cache(tmp_path, monkeypatch, one_thread):
    """cached_finetune trains through train.experiment.cached_train: a second call, or the same run asked of
    cached_train directly, loads it (no training), and the weights are the ones trained."""
    import copy

    import torch

    from instructlib.data.collate import DataCollatorForInstructions, encode_dataset
    from instructlib.evaluation.capstone import cached_finetune, recipe_config
    from instructlib.models import load_model, load_tokenizer
    from instructlib.models.course import course_model_dir
    from instructlib.train import experiment

    monkeypatch.setattr(experiment, "cache_dir", lambda: tmp_path)
    trained = []
    real_train = experiment.train
    monkeypatch.setattr(experiment, "train", lambda *a, **k: trained.append(1) or real_train(*a, **k))
    hand, val = make_examples("train", 2, seed=0), make_examples("validation", 1, seed=0)
    recipe = Recipe(steps=3, batch_size=4)
    model, meta = cached_finetune("hand", hand, steps=3, seed=1, recipe=recipe, eval_records=val, progress=False)
    assert trained == [1] and meta["steps"] == meta["steps_planned"] == 3 and meta["seed"] == 1
    assert (tmp_path / "sft-runs" / meta["run"] / "run.json").exists() and meta["run"].startswith("capstone-hand-seed1-")
    again, meta_again = cached_finetune("hand", hand, steps=3, seed=1, recipe=recipe, eval_records=val, progress=False)
    assert trained == [1] and meta_again == meta, "a cached run is loaded, not trained again"
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name
    tokenizer, base = load_tokenizer("tinygpt"), load_model("tinygpt")
    encode = lambda ex: encode_dataset([e.record for e in ex], tokenizer, base.config.block_size, "chat")[0]  # noqa: E731
    direct = experiment.cached_train("capstone-hand-seed1", lambda: copy.deepcopy(base), encode(hand),
                                     DataCollatorForInstructions(tokenizer), recipe_config(recipe, 3, 1, True),
                                     eval_data=encode(val), key={"base": course_model_dir().name}, device="cpu")
    assert direct.from_cache and direct.path.name == meta["run"] and trained == [1], "one cache, one key"
    other, other_meta = cached_finetune("hand", hand, steps=3, seed=2, recipe=recipe, eval_records=val, progress=False)
    assert trained == [1, 1] and other_meta["run"] != meta["run"], "another seed is another run"


def test_named_model_built_from_another_run_is_rebuilt_and_the_old_one_kept(tmp_path, monkeypatch, one_thread):
    """capstone_model: an alias whose meta names another run (its data changed) is moved aside, then rebuilt."""
    import json

    from instructlib.evaluation import capstone
    from instructlib.models import loader

    target = tmp_path / "aliases" / "tinygpt-sft-hand-ci"
    for module in (capstone, loader):
        monkeypatch.setattr(module, "finetuned_path", lambda name: target)
    target.mkdir(parents=True)
    (target / "meta.json").write_text(json.dumps({"alias": "tinygpt-sft-hand", "run": "an-older-run"}))
    path = capstone.capstone_model("tinygpt-sft-hand", progress=False)
    meta = json.loads((path / "meta.json").read_text())
    assert path == target and meta["run"].startswith("testbed-hand-written-") and (path / "model.pt").exists()
    assert json.loads((tmp_path / "aliases" / "tinygpt-sft-hand-ci.replaced-1" / "meta.json").read_text())["run"] == \
        "an-older-run", "the stale directory is kept, not deleted"
    before = (path / "model.pt").stat().st_mtime_ns
    assert capstone.capstone_model("tinygpt-sft-hand", progress=False) == path
    assert (path / "model.pt").stat().st_mtime_ns == before, "a current alias is left alone"
