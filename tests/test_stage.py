"""The resumable JSONL stage (kill -9 mid-run, rerun: nothing lost, nothing duplicated) and the Funnel."""
import json
import signal
import subprocess
import sys
import textwrap
import time

import matplotlib

matplotlib.use("Agg")

from instructlib.files import read_jsonl_lenient
from instructlib.generate.funnel import Funnel
from instructlib.generate.stage import JSONLStage


def test_rerun_skips_done_rows_and_never_duplicates(tmp_path):
    out = tmp_path / "rows.jsonl"
    with JSONLStage(out) as stage:
        assert stage.extend([{"id": 1}, {"id": 2}, {"id": 2}]) == 2
    with JSONLStage(out) as stage:
        assert stage.done == {1, 2} and 1 in stage and len(stage) == 2
        assert [i for i in stage.todo(range(5), key=lambda i: i)] == [0, 3, 4]
        assert stage.append({"id": 3}) and not stage.append({"id": 1})
        assert [r["id"] for r in stage.rows()] == [1, 2, 3]


def test_composite_keys(tmp_path):
    with JSONLStage(tmp_path / "r.jsonl", key=lambda r: [r["src"], r["tpl"]]) as stage:
        stage.extend([{"src": "a", "tpl": 1}, {"src": "a", "tpl": 2}, {"src": "a", "tpl": 1}])
        assert stage.done == {("a", 1), ("a", 2)}


JOB = textwrap.dedent("""
    import sys, time
    from instructlib.generate.stage import JSONLStage
    stage = JSONLStage(sys.argv[1], fsync=False)
    for i in stage.todo(range(2000), key=lambda i: i):
        stage.append({"id": i, "text": "x" * 200})
        time.sleep(0.001)
    print("finished")
""")


def test_kill_9_mid_run_then_resume_gives_every_row_exactly_once(tmp_path):
    out = tmp_path / "rows.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", JOB, str(out)], stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and len(read_jsonl_lenient(out)) < 200:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = len(read_jsonl_lenient(out))
    assert 200 <= partial < 2000, "the job must be killed mid-run"
    again = subprocess.run([sys.executable, "-c", JOB, str(out)], capture_output=True, text=True, timeout=120)
    assert "finished" in again.stdout, again.stderr
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert ids == list(range(2000)), "every row once, in order, none torn"


def test_funnel_counts_by_filter_and_reason():
    funnel = Funnel()
    short = lambda s: "too short" if len(s) < 3 else None  # noqa: E731
    upper = lambda s: "starts upper" if s[0].isupper() else None  # noqa: E731
    kept = funnel.run(["ab", "abc", "Abcd", "xyz", "q"], [("length", short), ("case", upper)])
    assert kept == ["abc", "xyz"]
    assert funnel.table() == [
        {"filter": "length", "in": 5, "kept": 3, "dropped": 2, "reasons": {"too short": 2}},
        {"filter": "case", "in": 3, "kept": 2, "dropped": 1, "reasons": {"starts upper": 1}},
    ]
    assert "too short: 2" in str(funnel)
    again = Funnel.from_dict(json.loads(json.dumps(funnel.to_dict())))
    assert again.table() == funnel.table()
    assert again.merge(funnel).table()[0]["in"] == 10
    ax = funnel.plot()
    assert [t.get_text() for t in ax.get_yticklabels()] == ["case", "length"]
