"""instructlib.course: benchmarks ship inside the package (no download), and `make course` shows
per-cell progress with a heartbeat naming the cell that is running."""
from __future__ import annotations

import importlib.util
import json
import re
import urllib.request
from pathlib import Path

import nbformat
import pytest

from instructlib import course
from instructlib.course import PACKAGED_BENCHMARKS, CellProgress, execute_notebook, load_benchmark

ROOT = Path(__file__).resolve().parent.parent


def _no_network(*args, **kwargs):
    raise AssertionError(f"network access attempted: {args}")


def test_load_benchmark_is_packaged_and_offline(monkeypatch, tmp_path):
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    monkeypatch.setattr(urllib.request, "urlretrieve", _no_network)
    monkeypatch.setattr(course, "ROOT", tmp_path)  # an installed package: no checkout, no benchmarks/
    bench = load_benchmark("attention")
    assert bench.__name__ == "instructlib.nn.attention_benchmark"
    assert Path(bench.__file__).resolve().is_relative_to((ROOT / "instructlib").resolve())
    rows = bench.benchmark_rows([(1, 2, 16, 8)], min_run_time=0.01)
    assert [r["causal"] for r in rows] == [False, True] and all(r["ratio"] > 0 for r in rows)
    assert bench.format_table(rows).count("\n") == 3


def test_unknown_benchmark_is_a_clear_error():
    with pytest.raises(ValueError, match="not shipped in the package"):
        load_benchmark("no_such_benchmark")


def test_benchmark_script_is_a_thin_wrapper():
    spec = importlib.util.spec_from_file_location("bench_attention_script", ROOT / "benchmarks" / "attention.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    bench = load_benchmark("attention")
    assert script.benchmark_rows is bench.benchmark_rows and script.format_table is bench.format_table


def test_notebooks_only_load_packaged_benchmarks():
    """What a notebook imports must be inside the package: a `pip install` on Colab has no benchmarks/."""
    found = []
    for nb_path in sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted((ROOT / "solutions").glob("*.ipynb")):
        for cell in json.loads(nb_path.read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] != "code":
                continue
            source = "".join(cell["source"])
            found += [(nb_path.name, n) for n in re.findall(r"load_benchmark\(\s*['\"](\w+)['\"]", source)]
            code = "\n".join(line.split("#")[0] for line in source.splitlines())
            assert "benchmarks/" not in code, f"{nb_path.name} reads a file from the checkout's benchmarks/"
    assert all(name in PACKAGED_BENCHMARKS for _, name in found), found


def test_cell_progress_lines_and_heartbeat(tmp_path, capsys):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# title"),
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell("# a slow step\nimport time; time.sleep(2.6)"),
        nbformat.v4.new_code_cell("print(x + 1)"),
    ])
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    seconds, results = execute_notebook(path, heartbeat=1.0)
    out = capsys.readouterr().out.splitlines()
    done = [line for line in out if re.match(r"\s+cell \d/3 ", line)]
    assert [line.split()[1] for line in done] == ["1/3", "2/3", "3/3"], out
    assert "# a slow step" in done[1] and "print(x + 1)" in done[2]
    beats = [line for line in out if "still running" in line]
    assert beats and all("cell 2/3" in line and "# a slow step" in line for line in beats), out
    assert results == {} and nbformat.read(path, as_version=4).cells[3].outputs[0]["text"] == "2\n"


def test_cell_progress_quiet(tmp_path, capsys):
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")]), tmp_path / "q.ipynb")
    execute_notebook(tmp_path / "q.ipynb", progress=False)
    assert capsys.readouterr().out == ""


def test_heartbeat_names_long_first_lines_briefly():
    tracker = CellProgress(1)
    cell = nbformat.v4.new_code_cell("\n\n" + "y = " + "1 + " * 40 + "1\nz = 2")
    tracker.cell_start(cell)
    assert tracker.label.startswith("y = 1 + ") and len(tracker.label) == 60 and tracker.label.endswith("…")


def test_run_polishes_what_it_executed(tmp_path):
    """`course run` writes finished progress bars (not the widget's 0% text), nbval tags instead of
    comments, the current setup cell, no machine paths, and the standard kernelspec."""
    from instructlib.polish import KERNELSPEC, WIDGET_VIEW

    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# title"),
        nbformat.v4.new_code_cell("# Setup. An old setup cell\nimport sys"),
        nbformat.v4.new_code_cell("# NBVAL_CHECK_OUTPUT\nfrom tqdm.auto import tqdm\n"
                                  "for _ in tqdm(range(40), desc='steps'):\n    pass\nimport os\nprint(os.getcwd())"),
    ])
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    execute_notebook(path, progress=False)
    done = nbformat.read(path, as_version=4)
    assert done.cells[1].source == course.SETUP_CELL and done.metadata.kernelspec == KERNELSPEC
    cell = done.cells[2]
    assert cell.source.startswith("from tqdm.auto") and cell.metadata.tags == ["nbval-check-output"]
    texts = [o.get("text") or o.get("data", {}).get("text/plain", "") for o in cell.outputs]
    assert not any(WIDGET_VIEW in o.get("data", {}) for o in cell.outputs), cell.outputs
    assert any(re.match(r"steps: 100%\|█+\| 40/40 ", t) for t in texts), texts
    assert str(tmp_path) not in "".join(texts) and "<tmp>/" in "".join(texts), texts


def test_show_committed_results_prints_the_newest_file_or_where_to_find_it(capsys):
    from instructlib.course import show_committed_results

    path = show_committed_results("serve-cpu-*.txt")
    assert path is not None and path.name == sorted((ROOT / "benchmarks" / "results").glob("serve-cpu-*.txt"))[-1].name
    assert "median ratio" in capsys.readouterr().out
    assert show_committed_results("no-such-results-*.txt") is None
    assert "https://github.com/" in capsys.readouterr().out
