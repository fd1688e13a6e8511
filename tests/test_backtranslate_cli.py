"""Chapter 07: `instructlib generate backtranslate` — validated output, clean errors, resume after kill -9."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

from instructlib.cli import main
from instructlib.data.records import Record
from instructlib.data.validate import validate_file
from instructlib.generate.backtranslation.roundtrip import MarianTranslator, run_backtranslate
from instructlib.models.llm import ScriptedLLM

# A deterministic "translator" pair: en -> zh is a table, zh -> en gives sample-dependent paraphrases.
SCRIPT = textwrap.dedent('''
    import time
    from instructlib.generate.backtranslation.roundtrip import MarianTranslator
    from instructlib.models.llm import ScriptedLLM

    def forward_fn(prompt):
        return "中文" + "".join(c for c in prompt if c.isdigit())

    class Back:
        def __init__(self, delay):
            self.k, self.delay = 0, delay
        def __call__(self, prompt):
            time.sleep(self.delay)
            self.k += 1
            n = int(prompt[2:])
            return ["Put numbers in order, version %d." % n, "Order the values, variant %d." % n,
                    "Sort numbers, version %d." % n][self.k % 3]

    def translators(delay=0.0):
        return (MarianTranslator(ScriptedLLM(forward_fn), "en", "zh", name="fw"),
                MarianTranslator(ScriptedLLM(Back(delay)), "zh", "en", name="bw"))
''')


def records(k=12):
    return [Record(f"Sort numbers, version {i}.", "3 1 2", "1 2 3") for i in range(k)]


def load(path):
    return [json.loads(line) for line in open(path)]


def test_output_validates_and_keeps_provenance(tmp_path, monkeypatch):
    sys.path.insert(0, str(tmp_path))
    (tmp_path / "scripted_tr.py").write_text(SCRIPT)
    import scripted_tr

    fw, bw = scripted_tr.translators()
    out = tmp_path / "out.jsonl"
    funnel = run_backtranslate(records(), str(out), fw, bw, n=3, min_chrf=0, progress=False)
    assert validate_file(out).ok
    rows = load(out)
    assert rows and all(r["source_instruction"].startswith("Sort numbers") and r["pivot"].startswith("中文") for r in rows)
    cands = load(tmp_path / "out.candidates.jsonl")
    assert len(cands) == 36 and sum(c["kept"] for c in cands) == len(rows)
    assert funnel.table()[0]["in"] == 36 and funnel.table()[-1]["kept"] == len(rows)
    sys.path.remove(str(tmp_path))


def test_resume_after_kill_gives_the_same_result(tmp_path):
    (tmp_path / "scripted_tr.py").write_text(SCRIPT)
    recs = [r.to_dict() for r in records()]
    (tmp_path / "in.json").write_text(json.dumps(recs))
    job = textwrap.dedent(f'''
        import sys; sys.path.insert(0, {str(tmp_path)!r})
        from scripted_tr import translators
        from instructlib.data.io import load_records
        from instructlib.generate.backtranslation.roundtrip import run_backtranslate
        fw, bw = translators(delay=float(sys.argv[2]))
        run_backtranslate(load_records({str(tmp_path / "in.json")!r}), sys.argv[1], fw, bw, n=3, min_chrf=0,
                          chunk=2, progress=False)
    ''')
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ref = tmp_path / "ref.jsonl"
    subprocess.run([sys.executable, "-c", job, str(ref), "0"], check=True, env=env)
    out = tmp_path / "out.jsonl"
    cands = tmp_path / "out.candidates.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", job, str(out), "0.05"], env=env)
    deadline = time.time() + 120
    while time.time() < deadline and (not cands.exists() or len(cands.read_text().splitlines()) < 6):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(cands.read_text().splitlines())
    assert 6 <= done_before < 36 and not out.exists()
    subprocess.run([sys.executable, "-c", job, str(out), "0"], check=True, env=env)
    again = load(cands)
    assert len(again) == 36 and len({c["id"] for c in again}) == 36  # nothing lost, nothing twice
    assert sorted(map(json.dumps, load(out))) == sorted(map(json.dumps, load(ref)))


def test_cli_reports_bad_input_without_a_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "Sort.", "output": "1"}\n{"instruction": 3, "output": "x"}\n')
    assert main(["generate", "backtranslate", "--input", str(bad), "--out", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl:2" in err and "instruction" in err and "Traceback" not in err
    assert main(["generate", "backtranslate", "--input", str(tmp_path / "missing.jsonl"),
                 "--out", str(tmp_path / "o.jsonl")]) == 2


def test_cli_with_the_course_translator_writes_valid_records(tmp_path, capsys, one_thread):
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(r.to_dict()) for r in [
        Record("Sort the numbers from smallest to largest.", "3 1 2", "1 2 3"),
        Record("Add the two numbers.", "2 3", "5"), Record("Find the largest number.", "4 9 1", "9")]) + "\n")
    out = tmp_path / "out.jsonl"
    assert main(["generate", "backtranslate", "--input", str(src), "--out", str(out), "-n", "2", "--min-chrf", "0"]) == 0
    printed = capsys.readouterr().out
    assert "novelty" in printed and f"wrote {out}" in printed
    cands = load(tmp_path / "out.candidates.jsonl")
    assert len(cands) == 6 and all(c["forward"] == "course en->zh" for c in cands)
    assert out.exists() and (not load(out) or validate_file(out).ok)
