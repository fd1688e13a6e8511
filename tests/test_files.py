"""instructlib.files: atomic writes keep permissions and leave nothing behind; the append-only log
survives kill -9 with every line complete."""
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from instructlib import files


def test_atomic_write_replaces_and_keeps_permissions(tmp_path):
    target = tmp_path / "grades.csv"
    target.write_text("old")
    os.chmod(target, 0o644)
    files.atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    os.chmod(target, 0o640)
    files.atomic_write_bytes(target, [b"a", b"b"])
    assert target.read_bytes() == b"ab" and stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grades.csv"]


def test_new_file_gets_umask_permissions_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        files.atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644


def test_failed_write_keeps_old_content_and_no_temp_file(tmp_path):
    target = tmp_path / "data.jsonl"
    files.atomic_write_jsonl(target, [{"a": 1}])

    def chunks():
        yield "partial"
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        files.atomic_write_text(target, chunks())
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["data.jsonl"]


def test_lone_surrogate_is_refused_before_anything_is_written(tmp_path):
    target = tmp_path / "x.jsonl"
    files.atomic_write_jsonl(target, [{"a": "ok"}])
    with pytest.raises(UnicodeEncodeError):
        files.atomic_write_jsonl(target, [{"a": "\ud800"}])
    assert target.read_text() == '{"a": "ok"}\n'


def test_orphaned_temp_files_of_dead_writers_are_removed(tmp_path):
    target = tmp_path / "out.json"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = tmp_path / f".out.json.tmp{int(dead.stdout)}.abc"
    orphan.write_text("half")
    alive = tmp_path / f".out.json.tmp{os.getppid()}.xyz"  # a live process (our parent): left alone
    alive.write_text("in progress")
    files.atomic_write_json(target, {"ok": True})
    assert not orphan.exists() and alive.exists()


def test_atomic_torch_save_round_trip(tmp_path):
    files.atomic_torch_save({"w": torch.arange(3)}, tmp_path / "ckpt.pt")
    assert torch.equal(torch.load(tmp_path / "ckpt.pt")["w"], torch.arange(3))


def test_build_once_builds_once_and_interrupted_build_leaves_nothing(tmp_path):
    calls = []

    def build(out):
        calls.append(out)
        (out / "f.txt").write_text("x")

    old = os.umask(0o022)
    try:
        assert files.build_once(tmp_path / "thing", build) == tmp_path / "thing"
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "thing").stat().st_mode) == 0o755, "readable by others, like a mkdir"
    files.build_once(tmp_path / "thing", build)
    assert len(calls) == 1 and (tmp_path / "thing" / "f.txt").read_text() == "x"

    def broken(out):
        (out / "half.bin").write_bytes(b"x")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        files.build_once(tmp_path / "other", broken)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thing"]


def test_appender_cuts_a_torn_last_line(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_bytes(b'{"a": 1}\n{"a": 2}\n{"a": 3, "b": "tor')
    assert files.read_jsonl_lenient(log) == [{"a": 1}, {"a": 2}]
    with files.JSONLAppender(log) as w:
        w.append({"a": 4})
    assert files.read_jsonl_lenient(log) == [{"a": 1}, {"a": 2}, {"a": 4}]
    assert log.read_text().endswith('{"a": 4}\n')


WRITER = textwrap.dedent("""
    import sys
    from instructlib.files import JSONLAppender
    w = JSONLAppender(sys.argv[1], fsync=False)
    i = 0
    while True:
        w.append({"writer": int(sys.argv[2]), "i": i, "pad": "x" * 500})
        i += 1
""")


def test_concurrent_writers_killed_mid_run_leave_only_complete_lines(tmp_path):
    log = tmp_path / "log.jsonl"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(log), str(k)]) for k in range(4)]
    deadline = time.time() + 30
    while time.time() < deadline and (not log.exists() or log.stat().st_size < 200_000):
        time.sleep(0.05)
    for p in procs:
        p.send_signal(signal.SIGKILL)
        p.wait()
    with files.JSONLAppender(log):  # reopening repairs a torn tail, if any
        pass
    raw = log.read_bytes()
    assert raw.endswith(b"\n")
    rows = [json.loads(line) for line in raw.splitlines()]  # every line parses: none torn or interleaved
    assert len(rows) > 100
    for k in range(4):  # each writer's lines are in order with no gap
        mine = [r["i"] for r in rows if r["writer"] == k]
        assert mine == list(range(len(mine)))
