"""Named fine-tuned models: alias lookup, the error when one is missing, save/load round trip, build on demand."""
import json

import pytest
import torch

from instructlib.models import loader
from instructlib.models.loader import (FINETUNED_ALIASES, ModelNotAvailableError, finetuned_path, load_finetuned,
                                       load_model, load_tokenizer, save_finetuned)
from instructlib.nn.gpt import GPTConfig, TinyGPT


def _tiny(seed=0):
    torch.manual_seed(seed)
    return TinyGPT(GPTConfig(vocab_size=40, block_size=16, n_layer=1, n_head=2, n_embd=8))


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_aliases_resolve_to_a_directory_per_profile(tmp_path, monkeypatch):
    monkeypatch.setenv("INSTRUCTLIB_CACHE", str(tmp_path))
    monkeypatch.setenv("INSTRUCTLIB_PROFILE", "ci")
    assert set(FINETUNED_ALIASES) == {"tinygpt-sft-hand", "tinygpt-sft-templates", "tinygpt-sft-backtranslation",
                                      "tinygpt-sft-selfinstruct", "tinygpt-sft-all", "tinygpt-sft-control"}
    path = finetuned_path("tinygpt-sft-all")
    assert path == tmp_path / "finetuned" / "aliases" / "tinygpt-sft-all-ci"
    monkeypatch.setenv("INSTRUCTLIB_PROFILE", "cpu")
    assert finetuned_path("tinygpt-sft-all").name == "tinygpt-sft-all-cpu"
    with pytest.raises(KeyError, match="not a fine-tuned alias"):
        finetuned_path("tinygpt-sft-everything")


def test_missing_model_without_builder_names_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("INSTRUCTLIB_CACHE", str(tmp_path))
    monkeypatch.setattr(loader, "_FINETUNED_BUILDERS", {})
    with pytest.raises(ModelNotAvailableError) as err:
        load_model("tinygpt-sft-all")
    message = str(err.value)
    assert "instructlib capstone build tinygpt-sft-all" in message
    assert "instructlib.evaluation.capstone.capstone_model('tinygpt-sft-all')" in message
    assert not finetuned_path("tinygpt-sft-all").exists(), "nothing half-built is left behind"


def test_save_load_round_trip_and_alias_lookup(tmp_path, monkeypatch):
    monkeypatch.setenv("INSTRUCTLIB_CACHE", str(tmp_path))
    monkeypatch.setattr(loader, "_FINETUNED_BUILDERS", {})
    model = _tiny()
    out = save_finetuned(tmp_path / "saved", model, {"seed": 3})
    back = load_finetuned(out)
    assert _same_weights(model, back) and not back.training
    assert json.loads((out / "meta.json").read_text())["seed"] == 3
    assert not _same_weights(model, _tiny(seed=1)), "the comparison can fail"
    save_finetuned(finetuned_path("tinygpt-sft-hand"), model, {"alias": "tinygpt-sft-hand"})
    assert _same_weights(load_model("tinygpt-sft-hand"), model)


def test_registered_builder_runs_once_on_demand(tmp_path, monkeypatch):
    monkeypatch.setenv("INSTRUCTLIB_CACHE", str(tmp_path))
    calls = []

    def builder(name, out):
        calls.append(name)
        save_finetuned(out, _tiny(), {"alias": name})

    monkeypatch.setattr(loader, "_FINETUNED_BUILDERS", {})
    loader.register_finetuned_builder("tinygpt-sft-templates", builder)
    first = load_model("tinygpt-sft-templates")
    second = load_model("tinygpt-sft-templates")
    assert calls == ["tinygpt-sft-templates"] and _same_weights(first, second)
    with pytest.raises(KeyError):
        loader.register_finetuned_builder("not-an-alias", builder)


def test_capstone_registers_builders_and_builds_in_ci_size(tmp_path, monkeypatch, one_thread):
    """The real builder: importing the capstone module makes load_model build the alias (ci sizes)."""
    monkeypatch.setenv("INSTRUCTLIB_PROFILE", "ci")
    from instructlib.evaluation import capstone

    assert set(loader._FINETUNED_BUILDERS) == set(FINETUNED_ALIASES) == set(capstone.ALIAS_CONDITIONS)
    target = tmp_path / "alias"
    monkeypatch.setattr(loader, "finetuned_path", lambda name: target)   # build here, not in the shared cache
    model = load_model("tinygpt-sft-hand")
    meta = json.loads((target / "meta.json").read_text())
    assert (meta["alias"], meta["condition"], meta["seed"]) == ("tinygpt-sft-hand", "hand-written", 0)
    assert meta["steps"] == meta["steps_planned"] >= 1
    base = load_model("tinygpt")
    assert not _same_weights(model, base), "the alias is fine-tuned, not the base model"
    assert load_tokenizer("tinygpt-sft-hand").get_vocab() == load_tokenizer("tinygpt").get_vocab()
    # a second build (e.g. the notebook's grid) hits the fine-tuning cache: same weights
    again = tmp_path / "again"
    capstone.build_capstone_model("tinygpt-sft-hand", again)
    assert _same_weights(load_finetuned(again), model)
    with pytest.raises(KeyError):
        capstone.capstone_model("tinygpt-sft-nothing")


def test_capstone_cli_list_and_unknown_name(capsys, tmp_path, monkeypatch):
    from instructlib.cli import main

    monkeypatch.setenv("INSTRUCTLIB_CACHE", str(tmp_path))
    assert main(["capstone", "list"]) == 0
    out = capsys.readouterr().out
    assert "tinygpt-sft-all" in out and "tinygpt-sft-control" in out and "not built" in out
    assert main(["capstone", "build", "tinygpt-sft-nothing"]) == 2
    err = capsys.readouterr().err
    assert "unknown model name(s) tinygpt-sft-nothing" in err and "Traceback" not in err
