"""Chapter 10 feedback loop: no torn or lost feedback line under 8 writers and a kill -9 of the server,
labelling into validated records, replay mixing, the evaluation gate, the registry, redaction, retraining."""
import concurrent.futures
import json
import os
import signal
import threading
import time

import httpx
import pytest

from deploy_helpers import make_tiny_model_dir, server_process
from instructlib.data.verifiable import make_examples
from instructlib.deploy.feedback import (FEEDBACK_LOG, REQUESTS_LOG, AdapterRegistry, FeedbackStore, answers, gate,
                                         label, label_logs, labelled_records, mix_with_replay,
                                         non_inferiority_bound, paired_interval, train_adapter)
from instructlib.deploy.redact import redact, was_redacted
from instructlib.files import JSONLAppender
from instructlib.models.llm import ScriptedLLM


def test_feedback_survives_8_writers_and_kill_9(tmp_path):
    model_dir = make_tiny_model_dir(tmp_path / "model")
    logs = tmp_path / "logs"
    acknowledged: list[str] = []
    lock, stop = threading.Lock(), threading.Event()
    with server_process("--model", str(model_dir), "--name", "tiny", "--log-dir", str(logs)) as (base, proc):
        rids = [httpx.post(base + "/v1/completions", json={"model": "tiny", "prompt": f"p{i}", "max_tokens": 2,
                                                           "temperature": 0}).json()["id"] for i in range(4)]

        def writer(k):
            with httpx.Client(timeout=10) as client:
                n = 0
                while not stop.is_set():
                    try:
                        r = client.post(base + "/v1/feedback", json={
                            "request_id": rids[k % 4], "rating": "down",
                            "correction": f"writer {k} line {n} " + "x" * (50 * (n % 7))})
                    except httpx.HTTPError:
                        return  # the server is gone
                    if r.status_code == 200:
                        with lock:
                            acknowledged.append(r.json()["id"])
                    n += 1

        threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while len(acknowledged) < 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)  # no shutdown handler runs
        proc.wait()
        stop.set()
        for t in threads:
            t.join()
    assert len(acknowledged) >= 50
    path = logs / FEEDBACK_LOG
    JSONLAppender(path).close()  # reopening repairs a torn last line, as the restarted server would
    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    rows = [json.loads(line) for line in raw.decode().splitlines()]  # every line parses: none torn or interleaved
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids))
    missing = set(acknowledged) - set(ids)
    assert not missing, f"{len(missing)} acknowledged feedback lines lost"
    assert all(r["correction"].startswith("writer ") for r in rows)


def _logs(tmp_path):
    store = FeedbackStore(tmp_path)
    chat = lambda text: {"messages": [{"role": "user", "content": text}]}  # noqa: E731
    store.log_request("r1", "chat", "m", None, chat("Add the two numbers.\n\n2 3"), ["5"])
    store.log_request("r2", "chat", "m", None, chat("Add the two numbers.\n\n4 4"), ["9"])
    store.log_request("r3", "chat", "m", None, chat("Reverse the order of the words.\n\na b"), ["b"])
    store.log_request("r4", "completion", "m", None, {"prompt": "Name a colour."}, ["red"])
    store.log_request("r5", "chat", "m", None, chat("Email bob@example.com the sum.\n\n1 1"), ["2"])
    store.log_feedback("r1", "up", None)
    store.log_feedback("r2", "down", "8")
    store.log_feedback("r3", "down", None)
    store.log_feedback("r4", "down", "   ")
    store.log_feedback("r5", "up", None)
    store.log_feedback("nope", "up", None)
    store.log_feedback("r3", "down", "b a")  # a later rating replaces the earlier one
    store.close()
    return tmp_path


def test_labelling_accept_correct_reject(tmp_path):
    labels = {lab.request_id: lab for lab in label_logs(_logs(tmp_path), out=tmp_path / "labels.jsonl")}
    assert labels["r1"].decision == "accept" and labels["r1"].record == {
        "instruction": "Add the two numbers.", "input": "2 3", "output": "5"}
    assert labels["r2"].decision == "correct" and labels["r2"].record["output"] == "8"
    assert labels["r3"].decision == "correct" and labels["r3"].record["output"] == "b a"
    assert labels["r4"].decision == "reject" and "without a correction" in labels["r4"].reason
    assert labels["nope"].decision == "reject" and labels["nope"].reason == "unknown request id"
    assert labels["r5"].record["instruction"] == "Email [EMAIL] the sum."  # the log kept no address
    records = labelled_records(list(labels.values()))
    assert len(records) == 4 and {r.output for r in records} == {"5", "8", "b a", "2"}
    assert labelled_records(list(labels.values())[::-1]) == records  # the log's order does not matter
    assert len((tmp_path / "labels.jsonl").read_text().splitlines()) == len(labels)


def test_labelling_rejects_invalid_records():
    requests = [{"id": "a", "request": {"messages": [{"role": "user", "content": "   "}]}, "outputs": ["x"]},
                {"id": "b", "request": {"messages": [{"role": "assistant", "content": "hi"}]}, "outputs": ["x"]},
                {"id": "c", "request": {"prompt": ["list", "prompt"]}, "outputs": ["x"]},
                {"id": "d", "request": {"prompt": "Say hi."}, "outputs": ["   "]}]
    feedback = [{"id": f"f{r['id']}", "request_id": r["id"], "rating": "up", "correction": None} for r in requests]
    labels = label(requests, feedback)
    assert [lab.decision for lab in labels] == ["reject"] * 4
    assert all(lab.reason.startswith("invalid record") for lab in labels)


def test_logs_are_redacted(tmp_path):
    store = FeedbackStore(tmp_path)
    store.log_request("r", "chat", "m", None, {"messages": [{"role": "user", "content": "I am li@x.org, 13812345678"}]},
                      ["card 4111 1111 1111 1111"])
    store.log_feedback("r", "down", "use key sk-abcdefghijklmnopqrstuv instead")
    store.close()
    text = (tmp_path / REQUESTS_LOG).read_text() + (tmp_path / FEEDBACK_LOG).read_text()
    for secret in ("li@x.org", "13812345678", "4111 1111 1111 1111", "sk-abcdefghijklmnopqrstuv"):
        assert secret not in text
    for tag in ("[EMAIL]", "[PHONE]", "[CARD]", "[SECRET]"):
        assert tag in text


@pytest.mark.parametrize("text,expected", [
    ("reach me at a.b@c.io", "reach me at [EMAIL]"),
    ("call +1 555-123-4567 now", "call [PHONE] now"),
    ("id 11010519491231002X", "id [ID_NUMBER]"),
    ("from 10.0.0.254", "from [IP]"),
    ("password=hunter2", "[SECRET]"),
    ("Authorization: Bearer abcdefghijklmnopqrstuvwxyz", "Authorization: [SECRET]"),
    ("12 45 3 88 90 11 7", "12 45 3 88 90 11 7"),      # task data survives
    ("a1b2c3d4e", "a1b2c3d4e"),
    ("4111 1111 1111 1112", "4111 1111 1111 1112"),     # fails the Luhn check: not a card
])
def test_redact(text, expected):
    assert redact(text) == expected
    assert was_redacted(redact(text)) == (text != expected)


def test_mix_with_replay():
    from instructlib.data.records import Record

    new = [Record(f"n{i}", "", "x") for i in range(10)]
    old = [Record(f"o{i}", "", "y") for i in range(100)]
    mixed = mix_with_replay(new, old, replay_ratio=2.0, seed=0)
    assert len(mixed) == 30 and sum(r.instruction.startswith("n") for r in mixed) == 10
    assert len({r.instruction for r in mixed}) == 30
    assert mixed == mix_with_replay(new, old, replay_ratio=2.0, seed=0)
    assert len(mix_with_replay(new, old[:5], replay_ratio=2.0)) == 15


def test_gate_rejects_a_worse_adapter_and_passes_a_better_one():
    examples = make_examples("test", 4, seed=0)
    right = {e.record.instruction + "\n\n" + e.record.input: e.record.output for e in examples}

    def scripted(fraction_right):
        keys = sorted(right)
        good = set(keys[:round(fraction_right * len(keys))])

        def answer(prompt):
            user = prompt.split("<|user|>")[1].rsplit("\n<|assistant|>")[0]
            return right[user] if user in good else "wrong"
        return ScriptedLLM(answer)

    served = answers(scripted(0.6), examples)
    worse, better = answers(scripted(0.3), examples), answers(scripted(0.9), examples)
    rejected = gate(served, worse, examples)
    assert not rejected.passed and rejected.candidate < rejected.served
    assert rejected.interval[1] < 0  # the drop is significant here
    assert gate(served, better, examples).passed
    assert gate(served, served, examples).passed  # equal is allowed
    assert gate(served, worse, examples, tolerance=0.5).passed
    assert "REJECT" in str(rejected)


def _outcome_answers(examples, right):
    """Answers that are right exactly where ``right`` is true."""
    return [e.record.output if ok else "wrong" for e, ok in zip(examples, right)]


def test_non_inferiority_gate():
    import random

    examples = make_examples("test", 100, seed=0)   # 1,300 items
    n = len(examples)
    rng = random.Random(0)
    served_right = [rng.random() < 0.2 for _ in range(n)]
    served = _outcome_answers(examples, served_right)
    # equally good: the same number right, 4 % of the items swapped between right and wrong
    flip = set(rng.sample([i for i in range(n) if served_right[i]], 26))
    flip |= set(rng.sample([i for i in range(n) if not served_right[i]], 26))
    equal = _outcome_answers(examples, [r != (i in flip) for i, r in enumerate(served_right)])
    result = gate(served, equal, examples, margin=0.02)
    assert result.difference == 0 and result.passed and -0.02 < result.lower_bound < 0
    assert "non-inferiority" in str(result) and "PASS" in str(result)
    # clearly worse: 5 points fewer right
    worse_right = list(served_right)
    for i in rng.sample([i for i in range(n) if served_right[i]], 65):
        worse_right[i] = False
    worse = gate(served, _outcome_answers(examples, worse_right), examples, margin=0.02)
    assert not worse.passed and worse.lower_bound < -0.02 and "REJECT" in str(worse)
    # the point-estimate rule with a generous tolerance would have let it through: the rules differ
    assert gate(served, _outcome_answers(examples, worse_right), examples, tolerance=0.06).passed
    # equally good on a tiny set: the interval is too wide to show non-inferiority
    tiny = examples[:8]
    tiny_served = _outcome_answers(tiny, [True, True, False, False, True, False, False, False])
    tiny_cand = _outcome_answers(tiny, [False, False, True, True, True, False, False, False])
    small = gate(tiny_served, tiny_cand, tiny, margin=0.02)
    assert small.difference == 0 and not small.passed and small.lower_bound < -0.3
    # identical answers: no disagreement, the bound is the difference itself
    assert gate(served, served, examples, margin=0.0).passed


@pytest.mark.parametrize("kwargs", [{"margin": -0.01}, {"margin": 1.5}, {"margin": "2%"},
                                    {"margin": 0.02, "tolerance": 0.01}, {"confidence": 1.0},
                                    {"margin": 0.02, "confidence": 0.3}])
def test_gate_bad_arguments(kwargs):
    examples = make_examples("test", 1, seed=0)
    outputs = [e.record.output for e in examples]
    with pytest.raises(ValueError):
        gate(outputs, outputs, examples, **kwargs)


def test_non_inferiority_bound():
    from statistics import NormalDist

    a, b = [1, 0, 1, 0, 1, 1], [1, 1, 0, 0, 1, 1]
    mean, (lo, _) = paired_interval(a, b)
    bound = non_inferiority_bound(a, b, 0.95)
    assert mean == 0 and lo < bound < mean  # one-sided 95 % (z 1.645) is narrower than two-sided (1.96)
    assert bound == pytest.approx(mean - NormalDist().inv_cdf(0.95) / 1.96 * (mean - lo))
    with pytest.raises(ValueError):
        non_inferiority_bound([1], [1, 0])
    with pytest.raises(ValueError):
        non_inferiority_bound([], [])


def test_paired_interval():
    mean, (lo, hi) = paired_interval([1, 1, 0, 0], [1, 1, 1, 1])
    assert mean == 0.5 and lo < 0.5 < hi
    assert paired_interval([1, 0], [1, 0]) == (0.0, (0.0, 0.0))


def test_registry_versions_activate_rollback(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "adapter_config.json").write_text("{}")
    reg = AdapterRegistry(tmp_path / "reg")
    assert reg.current() is None and reg.versions_list() == []
    with pytest.raises(LookupError):
        reg.rollback()
    v1, v2 = reg.add(src, {"em": 0.1}), reg.add(src, {"em": 0.2})
    assert (v1, v2) == ("v0001", "v0002") and reg.versions()[1]["em"] == 0.2
    reg.activate(v1)
    reg.activate(v2)
    assert reg.current() == v2
    assert reg.rollback() == v1 and reg.current() == v1
    assert reg.rollback() is None and reg.current() is None
    with pytest.raises(KeyError):
        reg.activate("v0042")
    assert AdapterRegistry(tmp_path / "reg").current() is None  # state lives on disk


def test_train_adapter_learns_the_feedback(tmp_path, one_thread):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from instructlib.data.records import Record
    from instructlib.deploy.feedback import load_with_adapter

    model_dir = make_tiny_model_dir(tmp_path / "model")
    base, tok = AutoModelForCausalLM.from_pretrained(model_dir), AutoTokenizer.from_pretrained(model_dir)
    records = [Record("Add the two numbers.", "12 45", "57")] * 8
    out = train_adapter(base, tok, records, tmp_path / "adapter", steps=30, batch_size=8, lr=1e-2, progress=False)
    assert (out / "adapter_config.json").is_file()
    llm = load_with_adapter(base, tok, out)
    before = load_with_adapter(base, tok, None)
    conv = [[{"role": "user", "content": "Add the two numbers.\n\n12 45"}]]
    assert llm.chat(conv, max_new_tokens=3, progress=False)[0].startswith("57")
    assert not before.chat(conv, max_new_tokens=3, progress=False)[0].startswith("57")
    again = train_adapter(base, tok, records, tmp_path / "adapter2", steps=2, init_adapter=out, progress=False)
    assert load_with_adapter(base, tok, again).chat(conv, max_new_tokens=3, progress=False)[0].startswith("57")
