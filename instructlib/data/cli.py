"""`instructlib validate FILE...` and `instructlib lint FILE...`: data checks from the command line."""
from __future__ import annotations

import argparse
import json
import sys
import warnings

from .records import DataError


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


def run_lint(args: argparse.Namespace) -> int:
    """Lint each file: issues, a per-task table, a summary (and a verb-noun plot with --plot)."""
    from .quality import issue_counts, lint_file, lint_table, plot_verb_noun

    status = 0
    for path in args.files:
        try:
            tasks, issues = lint_file(path)
        except DataError as err:
            print(f"{err}\n(run `instructlib validate {path}` to see every problem)", file=sys.stderr)
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
            counts = issue_counts(issues)
            summary = ", ".join(f"{c}: {sum(v.values())}" for c, v in counts.items())
            n_err = sum(v["error"] for v in counts.values())
            print(f"\n{path}: {len(tasks)} tasks, {len(issues)} issues ({summary}); {n_err} errors")
        if args.plot:
            import matplotlib

            matplotlib.use("Agg")
            with warnings.catch_warnings():  # without a CJK font Chinese labels are boxes: no warning per glyph
                warnings.filterwarnings("ignore", message="Glyph .* missing from font")
                plot_verb_noun(tasks).savefig(args.plot, dpi=120, bbox_inches="tight")
            print(f"verb-noun plot written to {args.plot}")
        if any(i.severity == "error" for i in issues):
            status = max(status, 1)
    return status


def register(subparsers) -> None:
    """Add the `validate` and `lint` commands to the `instructlib` parser."""
    p = subparsers.add_parser("validate", help="check data files (seed tasks, Alpaca, chat) and list every problem")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=run_validate)
    p = subparsers.add_parser("lint", help="quality lint of tasks: clarity, completeness, consistency, diversity")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--all", action="store_true", help="also show info-level findings and clean tasks")
    p.add_argument("--json", action="store_true", help="print the issues as JSON")
    p.add_argument("--plot", metavar="PNG", help="write the leading verb-noun plot to this file")
    p.set_defaults(func=run_lint)
