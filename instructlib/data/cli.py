"""Chapter 04: `instructlib validate FILE...` and `instructlib lint FILE...`, data checks from the command line.

Every problem is printed as ``file:line: error: message``; no input file, however broken, produces a
Python traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings

from .records import DataError

FORMATS = """\
accepted formats (the kind is taken from the first item; every item must be of that kind):
  seed tasks     Self-Instruct seed tasks, one JSON object per line (.jsonl):
                 {"id", "name", "instruction", "instances": [{"input", "output"}], "is_classification"}
  Alpaca         records {"instruction", "input", "output"}, as a JSON array (.json) or JSON Lines (.jsonl)
  chat           {"messages": [{"role": "user" | "assistant" | "system", "content": ...}]} per item
Files are strict UTF-8 JSON: duplicate keys, lone \\uD800-style surrogates, integers over 4300
digits and nesting too deep to parse are errors. A .jsonl file must hold one object per line,
not a JSON array (rename such a file to .json)."""

VALIDATE_EXIT = """\
exit status:
  0  every file is valid
  1  some file has a problem (each one printed as file:line: error: message)
  2  the command line itself is wrong (argparse)"""

LINT_EXIT = """\
exit status:
  0  no error-level issue (warnings and info do not fail)
  1  some task has an error-level issue (e.g. an unfilled placeholder, an instance without output)
  2  some file cannot be read or is not valid (run `instructlib validate FILE` to see every problem)"""


def run_validate(args: argparse.Namespace) -> int:
    """Print every problem of each file and a one-line verdict; exit 1 if any file has an error."""
    from .validate import validate_file

    status = 0
    for path in args.files:
        report = validate_file(path)
        for problem in report.problems:
            print(problem)
        print(report.summary())
        status |= not report.ok
    return int(status)


def _summary(path: str, n_tasks: int, shown: list, hidden: int) -> str:
    """The closing line of `lint`: counts of the issues shown (and how many --all would add)."""
    from .quality import issue_counts

    counts = issue_counts(shown)
    per = ", ".join(f"{c}: {sum(v.values())}" for c, v in counts.items())
    n_err = sum(v["error"] for v in counts.values())
    more = f"; {hidden} info-level not shown (--all shows them)" if hidden else ""
    return f"{path}: {n_tasks} tasks, {len(shown)} issues ({per}); {n_err} errors{more}"


def run_lint(args: argparse.Namespace) -> int:
    """Lint each file: issues, a per-task table, a summary (and a verb-noun plot with --plot)."""
    from .quality import lint_file, lint_table, plot_verb_noun
    from .validate import validate_file

    status = 0
    for path in args.files:
        report = validate_file(path)
        if not report.ok:  # lint reads only what validate accepts; show why, then move on
            errors = [p for p in report.problems if p.severity == "error"]
            for problem in errors[:5]:
                print(problem, file=sys.stderr)
            more = f" ({len(errors) - 5} more)" if len(errors) > 5 else ""
            print(f"{path}: not linted: the file is not valid{more}; `instructlib validate {path}` lists "
                  "every problem", file=sys.stderr)
            status = 2
            continue
        try:
            tasks, issues = lint_file(path)
        except DataError as err:  # validate and the loaders should agree; never show a traceback if not
            print(err, file=sys.stderr)
            status = 2
            continue
        shown = [i for i in issues if args.all or i.severity != "info"]
        if args.json:
            print(json.dumps([vars(i) for i in shown], ensure_ascii=False, indent=1))
        else:
            for issue in shown:
                print(issue)
            print()
            print(lint_table(tasks, shown, only_flagged=not args.all))
            print("\n" + _summary(str(path), len(tasks), shown, len(issues) - len(shown)))
        if args.plot:
            import matplotlib

            matplotlib.use("Agg")
            with warnings.catch_warnings():  # without a CJK font Chinese labels are boxes: no warning per glyph
                warnings.filterwarnings("ignore", message="Glyph .* missing from font")
                try:
                    plot_verb_noun(tasks).savefig(args.plot, dpi=120, bbox_inches="tight")
                except (OSError, ValueError) as err:
                    print(f"{args.plot}: error: cannot write the plot: {getattr(err, 'strerror', None) or err}",
                          file=sys.stderr)
                    status = 2
                    continue
            print(f"verb-noun plot written to {args.plot}")
        if any(i.severity == "error" for i in issues):
            status = max(status, 1)
    return status


def register(subparsers) -> None:
    """Add the `validate` and `lint` commands to the `instructlib` parser."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser(
        "validate", help="check data files (seed tasks, Alpaca, chat) and list every problem",
        description="Check instruction data files and list every problem as file:line: error: message\n"
                    "(not just the first one), then one verdict line per file.", epilog=f"{FORMATS}\n\n{VALIDATE_EXIT}", formatter_class=fmt)
    p.add_argument("files", nargs="+", metavar="FILE", help="a .jsonl or .json data file")
    p.set_defaults(func=run_validate)
    p = subparsers.add_parser(
        "lint", help="quality lint of tasks: clarity, completeness, consistency, diversity",
        description="Quality lint of hand-written tasks against four criteria: clarity, completeness,\n"
                    "consistency, diversity. Each issue is printed as\n"
                    "  file:line: task: severity: criterion/rule: message\n"
                    "then a per-task table and a summary. The file is validated first; Alpaca rows\n"
                    "with the same instruction are linted as one task.",
        epilog=f"{FORMATS}\n\n{LINT_EXIT}", formatter_class=fmt)
    p.add_argument("files", nargs="+", metavar="FILE", help="a .jsonl or .json data file")
    p.add_argument("--all", action="store_true", help="also show info-level findings and clean tasks")
    p.add_argument("--json", action="store_true", help="print the issues shown as a JSON list")
    p.add_argument("--plot", metavar="PNG", help="write the leading verb-noun plot to this file")
    p.set_defaults(func=run_lint)
