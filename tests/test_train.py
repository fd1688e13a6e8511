"""The fine-tuning loop: loss, schedule, precision choice, accumulation, packing, resume, early stopping."""
import copy
import math

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, get_cosine_schedule_with_warmup

from instructlib.config import choose_autocast_dtype, needs_grad_scaler
from instructlib.data.collate import DataCollatorForInstructions
from instructlib.nn.gpt import GPTConfig, TinyGPT
from instructlib.train.__main__ import tiny_random_setup
from instructlib.train.loop import (TrainConfig, evaluate, forward_logits, make_grad_scaler, masked_loss_sum,
                                    resolve_precision, train, warmup_cosine)

COLLATE = DataCollatorForInstructions(pad_token_id=0)


def run(config, model=None, data=None, **kw):
    base, examples = tiny_random_setup()
    model = model or base
    return model, train(model, data or examples, kw.pop("collate", COLLATE), config, device="cpu", **kw)


def losses(result):
    return [r["loss"] for r in result.history.train]


def test_masked_loss_equals_transformers_loss():
    model, examples = tiny_random_setup()
    batch = COLLATE(examples[:6])
    logits = forward_logits(model, batch)
    ours = masked_loss_sum(logits, batch["labels"]) / (batch["labels"][:, 1:] != -100).sum()
    theirs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
    torch.testing.assert_close(ours, theirs)


def test_warmup_cosine_matches_transformers_schedule():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = get_cosine_schedule_with_warmup(opt, num_warmup_steps=5, num_training_steps=30)
    for step in range(31):
        assert warmup_cosine(step, 5, 30) == pytest.approx(opt.param_groups[0]["lr"], abs=1e-12), step
        opt.step()
        sched.step()
    assert warmup_cosine(30, 5, 30, min_lr_ratio=0.1) == pytest.approx(0.1)
    assert warmup_cosine(5, 5, 30, min_lr_ratio=0.1) == pytest.approx(1.0)


def test_loop_follows_the_schedule():
    _, result = run(TrainConfig(max_steps=8, batch_size=8, lr=1e-2, warmup_steps=3, min_lr_ratio=0.2, progress=False))
    lrs = [r["lr"] for r in result.history.train]
    assert lrs == pytest.approx([1e-2 * warmup_cosine(s, 3, 8, 0.2) for s in range(8)])


@pytest.mark.parametrize("device_type,bf16,expected", [("cuda", True, torch.bfloat16), ("cuda", False, torch.float16),
                                                        ("cpu", False, None), ("mps", False, None)])
def test_mixed_precision_choice(device_type, bf16, expected):
    dtype = choose_autocast_dtype(device_type, bf16)
    assert dtype == expected
    assert needs_grad_scaler(dtype) == (dtype == torch.float16), "a GradScaler exactly for fp16 (T4-class GPUs)"


def test_grad_scaler_created_exactly_for_fp16():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) is None, "no autocast on CPU"
    assert resolve_precision("bf16", cpu) == torch.bfloat16 and resolve_precision("fp32", cpu) is None
    assert isinstance(make_grad_scaler(torch.float16, cpu), torch.amp.GradScaler)
    assert make_grad_scaler(torch.bfloat16, cpu) is None and make_grad_scaler(None, cpu) is None
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp8", cpu)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_loop_trains_under_autocast(precision, tmp_path):
    config = TrainConfig(max_steps=4, batch_size=8, lr=1e-2, precision=precision, progress=False,
                         checkpoint_dir=str(tmp_path))
    _, result = run(config)
    assert all(math.isfinite(x) for x in losses(result))
    scaler_state = torch.load(tmp_path / "last.pt", weights_only=False)["scaler"]
    assert (scaler_state is not None) == (precision == "fp16"), "the scaler is saved exactly when it exists"


def test_gradient_accumulation_gives_the_same_steps_as_a_big_batch():
    model_a, big = run(TrainConfig(max_steps=4, batch_size=8, lr=1e-2, progress=False))
    model_b, accumulated = run(TrainConfig(max_steps=4, batch_size=4, grad_accum=2, lr=1e-2, progress=False))
    torch.testing.assert_close(torch.tensor(losses(accumulated)), torch.tensor(losses(big)), rtol=1e-5, atol=1e-6)
    for (n, a), b in zip(model_a.named_parameters(), model_b.parameters()):
        if n.endswith("c_attn.bias"):  # its key part has a zero gradient in exact arithmetic (softmax is
            continue                   # shift-invariant): Adam turns the rounding noise into full-size steps
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=n)


def test_packing_trains_like_padding_on_a_transformers_model():
    config = TrainConfig(max_steps=3, batch_size=8, lr=1e-2, progress=False)
    _, padded = run(config)
    _, packed = run(config, collate=DataCollatorForInstructions(pad_token_id=0, packing=True, max_length=64))
    torch.testing.assert_close(torch.tensor(losses(packed)), torch.tensor(losses(padded)), rtol=1e-4, atol=1e-5)


def test_gradient_checkpointing_changes_memory_not_maths():
    config = TrainConfig(max_steps=3, batch_size=8, lr=1e-2, progress=False)
    _, plain = run(config)
    model, checkpointed = run(TrainConfig(**{**config.__dict__, "gradient_checkpointing": True}))
    assert model.is_activation_checkpointing
    torch.testing.assert_close(torch.tensor(losses(checkpointed)), torch.tensor(losses(plain)), rtol=1e-5, atol=1e-6)


def test_tinygpt_trains_and_refuses_packed_batches():
    torch.manual_seed(0)
    model = TinyGPT(GPTConfig(vocab_size=64, block_size=64, n_layer=2, n_head=2, n_embd=32))
    _, result = run(TrainConfig(max_steps=12, batch_size=8, lr=1e-2, progress=False), model=model)
    assert losses(result)[-1] < losses(result)[0] - 0.1
    packer = DataCollatorForInstructions(pad_token_id=0, packing=True, max_length=64)
    with pytest.raises(ValueError, match="packed batches need a transformers model"):
        run(TrainConfig(max_steps=1, batch_size=8, progress=False), model=model, collate=packer)


def test_resume_ends_where_an_uninterrupted_run_ends(tmp_path):
    """Dropout on, length grouping on, evaluation on: a resumed run must still be bit-identical."""
    def fresh():
        model, data = tiny_random_setup()
        torch.manual_seed(1)
        dropout = GPT2LMHeadModel(GPT2Config(**{**model.config.to_dict(), "resid_pdrop": 0.1, "embd_pdrop": 0.1}))
        return dropout, data

    config = dict(max_steps=8, batch_size=4, grad_accum=2, lr=1e-2, warmup_steps=2, group_by_length=True,
                  eval_every=3, progress=False)
    model, data = fresh()
    full = train(model, data, COLLATE, TrainConfig(**config), eval_data=data[:8], device="cpu")

    first, data = fresh()
    half = train(first, data, COLLATE, TrainConfig(**config, stop_at=4, checkpoint_dir=str(tmp_path)),
                 eval_data=data[:8], device="cpu")
    assert half.step == 4 and (tmp_path / "last.pt").exists()
    torch.manual_seed(123)  # a new process would start from other RNG states and other weights
    second, data = fresh()
    resumed = train(second, data, COLLATE, TrainConfig(**config), eval_data=data[:8], device="cpu",
                    resume_from=tmp_path / "last.pt")
    assert resumed.step == 8 and losses(resumed) == losses(full)
    assert resumed.history.eval == full.history.eval
    for (n, a), b in zip(model.named_parameters(), second.parameters()):
        assert torch.equal(a, b), n
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"], "checkpoints are written atomically"


def test_early_stopping_restores_the_best_weights():
    model, data = tiny_random_setup()
    train_data, val_data = data[:48], data[48:]
    config = TrainConfig(max_steps=40, batch_size=8, lr=0.05, eval_every=2, patience=2, progress=False)
    result = train(model, train_data, COLLATE, config, eval_data=val_data, device="cpu")
    assert result.stopped_early and result.step < 40
    vals = [r["val_loss"] for r in result.history.eval]
    assert result.best_val_loss == min(vals) and vals[-1] > min(vals)
    assert evaluate(model, val_data, COLLATE) == pytest.approx(result.best_val_loss, rel=1e-6)


def test_load_best_at_end_ends_on_the_best_validation_weights_without_early_stopping():
    """Like Trainer's load_best_model_at_end: the run goes to max_steps, then takes the best weights back."""
    config = dict(max_steps=40, batch_size=8, lr=1e-2, eval_every=2, progress=False)  # best at step 6
    model, data = tiny_random_setup()
    train_data, val_data = data[:48], data[48:]
    snapshots = {}
    result = train(model, train_data, COLLATE, TrainConfig(**config, load_best_at_end=True), eval_data=val_data,
                   device="cpu", on_step=lambda step, m: snapshots.__setitem__(step, copy.deepcopy(m.state_dict())))
    vals = {r["step"]: r["val_loss"] for r in result.history.eval}
    assert result.step == 40 and not result.stopped_early and result.restored_best
    assert result.best_step == min(vals, key=vals.get) and result.best_step not in (0, 40), vals
    assert evaluate(model, val_data, COLLATE) == pytest.approx(result.best_val_loss, rel=1e-6)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, snapshots[result.best_step][name]), name
    assert sorted(snapshots) == list(range(1, 41)), "on_step sees every optimizer step"

    last, _ = tiny_random_setup()
    plain = train(last, train_data, COLLATE, TrainConfig(**config), eval_data=val_data, device="cpu")
    assert not plain.restored_best and plain.best_step == result.best_step, "off by default: the last step's weights"
    assert evaluate(last, val_data, COLLATE) == pytest.approx(vals[40], rel=1e-6)


def test_an_interrupted_run_does_not_restore_the_best_weights(tmp_path):
    """stop_at is an interruption: the checkpoint must hold the current weights so a resume continues."""
    model, data = tiny_random_setup()
    config = TrainConfig(max_steps=12, batch_size=8, lr=0.05, eval_every=2, load_best_at_end=True, stop_at=6,
                         checkpoint_dir=str(tmp_path), progress=False)
    seen = {}
    result = train(model, data[:48], COLLATE, config, eval_data=data[48:], device="cpu",
                   on_step=lambda step, m: seen.__setitem__(step, copy.deepcopy(m.state_dict())))
    assert result.step == 6 and not result.restored_best
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, seen[6][name]), name


def test_cached_train_trains_once_then_loads(tmp_path, monkeypatch):
    from instructlib.train import experiment

    monkeypatch.setattr(experiment, "cache_dir", lambda: tmp_path)
    _, data = tiny_random_setup()
    config = TrainConfig(max_steps=4, batch_size=8, lr=1e-2, eval_every=2, load_best_at_end=True, progress=False)
    fresh = lambda: tiny_random_setup()[0]  # noqa: E731
    calls = []
    curve = lambda m: calls.append(1) or {"val": evaluate(m, data[48:], COLLATE)}  # noqa: E731
    first = experiment.cached_train("t", fresh, data[:48], COLLATE, config, eval_data=data[48:], curve=curve,
                                    curve_steps=[2, 4], device="cpu")
    assert not first.from_cache and [p["step"] for p in first.info["curve"]] == [0, 2, 4] and len(calls) == 3
    again = experiment.cached_train("t", fresh, data[:48], COLLATE, config, eval_data=data[48:], curve=curve,
                                    curve_steps=[2, 4], device="cpu")
    assert again.from_cache and len(calls) == 3, "a cached run is loaded, not trained"
    for (n, a), b in zip(first.model.named_parameters(), again.model.parameters()):
        assert torch.equal(a, b), n
    assert evaluate(again.model, data[48:], COLLATE) == pytest.approx(first.info["best_val_loss"], rel=1e-6)
    memo_calls = []
    answers = [run.memo("answers", lambda: memo_calls.append(1) or ["a", "b"]) for run in (first, again)]
    assert answers == [["a", "b"]] * 2 and memo_calls == [1], "a run's results are computed once and kept with it"
    unmasked = [{**ex, "labels": list(ex["input_ids"])} for ex in data[:48]]
    other = experiment.cached_train("t", fresh, unmasked, COLLATE, config, eval_data=data[48:], device="cpu")
    assert not other.from_cache and other.path != first.path, "other labels are another run"


def test_mean_interval_is_the_t_interval():
    from instructlib.train.experiment import mean_interval

    mean, half = mean_interval([0.1, 0.2, 0.3])
    assert mean == pytest.approx(0.2) and half == pytest.approx(4.303 * 0.1 / 3 ** 0.5, rel=1e-4)
    assert math.isnan(mean_interval([0.5])[1])
    with pytest.raises(ValueError):
        mean_interval([])
    from instructlib.evaluation.bootstrap import mean_over_seeds
    values = [0.04 * k + 0.01 * (k % 3) for k in range(14)]  # 13 degrees of freedom: no table, no 1.96
    iv = mean_over_seeds(values)
    assert mean_interval(values) == pytest.approx((iv.value, iv.high - iv.value), rel=1e-9)


def test_history_plots_loss_curves():
    import matplotlib
    matplotlib.use("Agg")
    model, data = tiny_random_setup()
    result = train(model, data, COLLATE, TrainConfig(max_steps=3, batch_size=8, eval_every=1, progress=False),
                   eval_data=data[:8], device="cpu")
    ax = result.history.plot()
    assert len(ax.lines) == 2 and list(ax.lines[1].get_xdata()) == [0, 1, 2, 3]
    assert result.tokens == sum(r["tokens"] for r in result.history.train[-1:]) > 0


def test_bad_inputs_are_clear_errors():
    model, data = tiny_random_setup()
    frozen = copy.deepcopy(model).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        train(frozen, data, COLLATE, TrainConfig(max_steps=1, progress=False), device="cpu")
    with pytest.raises(ValueError, match="activation_checkpointing_enable"):
        train(TinyGPT(GPTConfig(vocab_size=64, block_size=64, n_layer=1, n_head=2, n_embd=32)), data, COLLATE,
              TrainConfig(max_steps=1, gradient_checkpointing=True, progress=False), device="cpu")


def test_generate_answers_agree_between_tinygpt_and_its_transformers_copy():
    """Both decoding branches of generate_answers (TinyGPT, transformers) give the same greedy answers."""
    from instructlib.data.verifiable import make_records
    from instructlib.models import load_tokenizer
    from instructlib.train.answers import generate_answers

    tok = load_tokenizer("tinygpt")
    torch.manual_seed(0)
    model = TinyGPT(GPTConfig(vocab_size=len(tok), block_size=128, n_layer=2, n_head=2, n_embd=32))
    records = make_records("test", 1)[:5]
    side = tok.padding_side
    ours = generate_answers(model, tok, records, "chat", max_new_tokens=8, batch_size=3, stop_at_newline=False)
    theirs = generate_answers(model.to_hf(), tok, records, "chat", max_new_tokens=8, batch_size=3, stop_at_newline=False)
    assert len(ours) == 5 and any(ours) and ours == theirs
    assert tok.padding_side == side and model.training, "padding side and train mode are restored"


def test_too_few_examples_for_one_batch_is_an_error_not_a_hang():
    """Every batch short of the global size is skipped, so a tiny dataset used to loop forever."""
    from instructlib.train.loop import _global_batches

    with pytest.raises(ValueError, match="cannot fill one global batch"):
        next(_global_batches([5, 6, 7], 8, TrainConfig(), start=0))


def test_training_runs_with_the_configured_cpu_threads_and_restores_them(tmp_path):
    from dataclasses import asdict

    from instructlib.config import CPU_THREADS
    from instructlib.train.experiment import run_dir

    seen = []
    before = torch.get_num_threads()
    other = 1 if before != 1 else 3
    for threads, expected in ((other, other), (None, before)):
        run(TrainConfig(max_steps=2, batch_size=8, threads=threads, progress=False),
            on_step=lambda step, m: seen.append(torch.get_num_threads()))
        assert seen[-2:] == [expected, expected] and torch.get_num_threads() == before
    assert TrainConfig().threads == CPU_THREADS
    # the course's default stays out of the run's key (runs made before the field existed keep theirs);
    # any other count is another run
    _, data = tiny_random_setup()
    keys = {t: run_dir("t", TrainConfig(threads=t), data[:8], None).name for t in (CPU_THREADS, 1, None)}
    assert len(set(keys.values())) == 3
    assert "threads" in asdict(TrainConfig())


def test_pretraining_runs_with_the_configured_threads(monkeypatch):
    from instructlib import pretrain

    before = torch.get_num_threads()
    other = 1 if before != 1 else 3
    seen = []
    real = pretrain.batch_loss

    def spy(*a, **k):
        seen.append(torch.get_num_threads())
        return real(*a, **k)

    torch.manual_seed(0)
    model = TinyGPT(GPTConfig(vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=16))
    data = torch.randint(50, (400,), generator=torch.Generator().manual_seed(0))
    cfg = pretrain.PretrainConfig(block_size=16, steps=2, batch_size=2, eval_every=2, threads=other)
    monkeypatch.setattr(pretrain, "batch_loss", spy)
    pretrain.train(model, data, cfg, progress=False)
    assert seen == [other, other] and torch.get_num_threads() == before


def test_side_by_side_runs_count_physical_cores_not_hyper_threads(monkeypatch):
    """Runs side by side never hold more threads than physical cores: 8 hyper-threads on 4 cores fit two
    2-thread runs, 8 real cores four; a process allowed fewer CPUs gets fewer runs."""
    import os

    import psutil

    from instructlib.train.experiment import physical_cores, processes_for

    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(psutil, "cpu_count", lambda logical=True: 8 if logical else 4)
    assert physical_cores() == 4
    assert (processes_for(2, 10), processes_for(1, 10), processes_for(2, 1), processes_for(8, 10)) == (2, 4, 1, 1)
    monkeypatch.setattr(psutil, "cpu_count", lambda logical=True: 8)  # no hyper-threads
    assert processes_for(2, 10) == 4
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)  # pinned to two CPUs
    assert processes_for(2, 10) == 1 and processes_for(1, 10) == 2
