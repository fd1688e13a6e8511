"""Chapter 06: (chapters 06–08) resumable stages that cannot lie — every JSONL-stage CLI, rerun after its
output was deleted or cut mid-line or a side file was deleted, rebuilds what the output lacks or stops
with one clear line (status 2) that says how to start over."""
import collections
import contextlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from instructlib.cli import main
from instructlib.generate.self_instruct.loop import SelfInstruct, SelfInstructConfig, load_seed_pool, sidecar_paths
from instructlib.models.llm import ScriptedLLM

sys.path.insert(0, str(Path(__file__).parent))
from test_self_instruct import scripted_model  # noqa: E402


def run_cli(*args) -> subprocess.CompletedProcess:
    """`instructlib ARGS` in-process; rc, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def tear(path: Path) -> None:
    """Cut the last line of ``path`` in half (what a kill mid-write, or a lost block, leaves)."""
    data = path.read_bytes()
    last = len(data.rstrip(b"\n").rsplit(b"\n", 1)[-1]) + 1
    path.write_bytes(data[:len(data) - last + last // 2])


def damaged(out: Path, case: str) -> None:
    """Apply ``case`` ("output deleted", "output torn", "<suffix> deleted", "<suffix> torn") to ``out``'s files."""
    what, how = case.rsplit(" ", 1)
    path = out if what == "output" else out.with_name(out.stem + what + ".jsonl")
    path.unlink() if how == "deleted" else tear(path)


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


# ---- templates: one output file, no side files --------------------------------------------------

@pytest.mark.parametrize("case", ["output deleted", "output torn"])
def test_templates_rebuild_what_the_output_lacks(tmp_path, case):
    from instructlib.generate.templates.bank_data import bank_examples

    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(json.dumps(e) + "\n" for e in bank_examples("uppercase", "train", 4)))
    argv = ["generate", "templates", "--bank", "uppercase", "--inputs", inputs, "--per-input", "2", "--out"]
    ref, out = tmp_path / "ref.jsonl", tmp_path / "out.jsonl"
    assert run_cli(*argv, ref).returncode == run_cli(*argv, out).returncode == 0
    damaged(out, case)
    res = run_cli(*argv, out)
    assert res.returncode == 0 and lines(out) == lines(ref) and len(lines(ref)) == 8, res.stderr


# ---- back-translation: OUT is rebuilt from OUT.candidates.jsonl every run -------------------------

class Samples:
    """zh -> en: the k-th sample of a prompt is paraphrase k (deterministic whatever the batching)."""

    def __init__(self):
        self.seen = collections.Counter()

    def __call__(self, prompt: str) -> str:
        self.seen[prompt] += 1
        n = int(prompt[2:])
        return ["Put numbers in order, version %d." % n, "Order the values, variant %d." % n,
                "Sort numbers, version %d." % n][(self.seen[prompt] - 1) % 3]


@pytest.fixture
def scripted_translators(monkeypatch):
    from instructlib.generate.backtranslation import roundtrip as bt

    def translators(name, profile=None):
        forward = ScriptedLLM(lambda p: "中文" + "".join(c for c in p if c.isdigit()))
        return (bt.MarianTranslator(forward, "en", "zh", name="fw"),
                bt.MarianTranslator(ScriptedLLM(Samples()), "zh", "en", name="bw"))

    monkeypatch.setattr(bt, "_translators", translators)


@pytest.mark.parametrize("case", ["output deleted", "output torn", ".candidates deleted", ".candidates torn"])
def test_backtranslate_rebuilds_what_the_output_lacks(tmp_path, scripted_translators, case):
    from instructlib.data.records import Record

    recs = tmp_path / "in.jsonl"
    recs.write_text("".join(json.dumps(Record(f"Sort numbers, version {i}.", "3 1 2", "1 2 3").to_dict()) + "\n"
                            for i in range(4)))
    argv = ["generate", "backtranslate", "--input", recs, "-n", "3", "--min-chrf", "0", "--out"]
    ref, out = tmp_path / "ref.jsonl", tmp_path / "out.jsonl"
    assert run_cli(*argv, ref).returncode == run_cli(*argv, out).returncode == 0
    damaged(out, case)
    res = run_cli(*argv, out)
    assert res.returncode == 0, res.stderr
    cands, ref_cands = (p.with_name(p.stem + ".candidates.jsonl") for p in (out, ref))
    assert len(lines(ref_cands)) == 12 and sorted(lines(cands)) == sorted(lines(ref_cands))  # every sample once
    assert lines(ref) and sorted(lines(out)) == sorted(lines(ref))


# ---- backward (Humpback): one output file, no side files ----------------------------------------

@pytest.fixture(scope="module")
def tiny_backward_model(tmp_path_factory):
    from transformers import GPT2Config, GPT2LMHeadModel

    from instructlib.models import load_tokenizer

    tok = load_tokenizer("tinygpt")
    model_dir = tmp_path_factory.mktemp("tiny-backward")
    tok.save_pretrained(model_dir)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=256, n_embd=32, n_layer=1, n_head=2,
                               eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)).save_pretrained(model_dir)
    return model_dir


@pytest.mark.parametrize("case", ["output deleted", "output torn"])
def test_backward_rebuilds_what_the_output_lacks(tmp_path, monkeypatch, one_thread, tiny_backward_model, case):
    import instructlib.models as models
    from instructlib.data.verifiable import make_records

    monkeypatch.setattr(models, "load_llm", lambda name, **kw: ScriptedLLM(lambda p: "Score: 5"))
    train, unlabelled = tmp_path / "train.jsonl", tmp_path / "unlabelled.jsonl"
    for path, records in ((train, make_records("train", 2, seed=0)), (unlabelled, make_records("test", 1, seed=0)[:4])):
        path.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in records))
    out = tmp_path / "out.jsonl"
    argv = ["generate", "backward", "--train", train, "--unlabelled", unlabelled, "--model", tiny_backward_model,
            "--steps", "1", "--out", out]
    assert run_cli(*argv).returncode == 0
    first = lines(out)
    damaged(out, case)
    res = run_cli(*argv)
    assert res.returncode == 0 and "4 candidates, 4 kept" in res.stdout, res.stdout + res.stderr
    again = lines(out)
    assert [json.loads(line)["id"] for line in again] == ["u0", "u1", "u2", "u3"]
    assert again[:3] == first[:3]


# ---- self-instruct: records, .pool.jsonl and .rounds.jsonl must agree -----------------------------

SI = ["self-instruct", "--num-instructions", "12", "--batch-size", "3", "--max-rounds", "3", "--out"]  # 3 rounds


@pytest.fixture
def models_scripted(monkeypatch):
    import instructlib.models as models

    loads = []
    monkeypatch.setattr(models, "load_llm", lambda name, **kw: loads.append(name) or ScriptedLLM(scripted_model))
    return loads


def state(out: Path) -> list[list[dict]]:
    """The rows of ``out``, its pool and its rounds log (a round's timing dropped: it differs run to run)."""
    rows = [[json.loads(line) for line in lines(p)] for p in sidecar_paths(out)]
    for row in rows[2]:
        row.pop("generation_seconds")
    return rows


def _si_run(tmp_path: Path, name: str) -> tuple[Path, list[list[dict]]]:
    out = tmp_path / name
    assert run_cli(*SI, out).returncode == 0
    return out, state(out)


@pytest.mark.parametrize("case", ["output deleted", "output torn", ".pool deleted", ".pool torn", ".rounds deleted"])
def test_self_instruct_refuses_state_its_output_no_longer_matches(tmp_path, models_scripted, case):
    out, want = _si_run(tmp_path, "si.jsonl")
    assert len(want[2]) >= 2, "the run needs two rounds or more"
    damaged(out, case)
    before = [lines(p) for p in sidecar_paths(out)]
    models_scripted.clear()
    res = run_cli(*SI, out)
    err = res.stderr.strip()
    assert res.returncode == 2 and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert not models_scripted, "refused before loading the model"
    assert [lines(p) for p in sidecar_paths(out)] == before and (case != "output deleted" or not out.exists())
    blamed, _, remedy = err.removeprefix("error: ").partition("; to start over delete ")
    what = case.split()[0]
    assert blamed.startswith(f"{out.with_name(out.stem + what + '.jsonl') if what != 'output' else out}: ")
    named = remedy.replace(",", " ").replace(" and ", " ").split()
    assert named == [str(p) for p in sidecar_paths(out) if p.exists()] and named
    for path in named:   # following the advice starts over and gives the uninterrupted result
        Path(path).unlink()
    assert run_cli(*SI, out).returncode == 0 and state(out) == want


def test_self_instruct_torn_rounds_log_repeats_the_round(tmp_path, models_scripted):
    """A kill after a round's rows, before (or while) its log line: the round is repeated, same files."""
    out, want = _si_run(tmp_path, "si.jsonl")
    damaged(out, ".rounds torn")
    assert run_cli(*SI, out).returncode == 0 and state(out) == want


def test_self_instruct_refuses_a_repeated_round_that_differs(tmp_path, monkeypatch, models_scripted):
    """A round cut short by a kill is repeated on resume; a model that then answers differently is refused."""
    import instructlib.models as models

    out, want = _si_run(tmp_path, "si.jsonl")
    assert want[2][-1]["records"] > 0
    damaged(out, ".rounds torn")   # the last round's rows are written, its log line is not
    other = lambda p: scripted_model(p).replace("answer", "reply").replace("A joy", "Pure joy")  # noqa: E731
    monkeypatch.setattr(models, "load_llm", lambda name, **kw: ScriptedLLM(other))
    res = run_cli(*SI, out)
    err = res.stderr.strip().splitlines()[-1]
    assert res.returncode == 2 and "Traceback" not in res.stderr and err.startswith(f"error: {out}: ")
    assert "came out differently when repeated" in err and "to start over delete" in err
    assert state(out)[:2] == want[:2] and len(state(out)[2]) == len(want[2]) - 1   # nothing written


def test_self_instruct_api_refuses_too(tmp_path):
    out = tmp_path / "si.jsonl"
    config = SelfInstructConfig(num_instructions=4, batch_size=3, max_rounds=2)
    runner = SelfInstruct(ScriptedLLM(scripted_model), load_seed_pool(), out, config)
    runner.run(progress=False)
    runner.close()
    shutil.copy(out, tmp_path / "keep.jsonl")
    out.unlink()
    with pytest.raises(ValueError, match=r"si\.jsonl: missing, but si\.rounds\.jsonl logs 1 finished round"):
        SelfInstruct(ScriptedLLM(scripted_model), load_seed_pool(), out, config)
    assert not out.exists()
    other = tmp_path / "other.jsonl"   # --out pointed at records some other tool wrote
    other.write_text('{"instruction": "Say hi.", "input": "", "output": "Hi."}\n')
    refused = r"other\.jsonl: 1 rows without a round .*; to start over delete \S*other\.jsonl$"
    with pytest.raises(ValueError, match=refused):
        SelfInstruct(ScriptedLLM(scripted_model), load_seed_pool(), other, config)
