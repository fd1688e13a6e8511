"""Exercises: `instructlib build-exercises SOLUTIONS EXERCISES` and `instructlib grade SUBMISSION... --out CSV`."""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


def _chapter(text: str) -> str:
    if not (text.isdigit() and len(text) <= 2):
        raise argparse.ArgumentTypeError(f"chapter must be a number like 03, not {text!r}")
    return f"{int(text):02d}"


def run_build(args: argparse.Namespace) -> int:
    """Regenerate the student notebooks (or, with --check, report the ones that are stale)."""
    from .build import build_exercises
    from .exercise import ExerciseFormatError

    try:
        if not args.check:
            for path in build_exercises(args.solutions, args.exercises):
                print(f"wrote {path}")
            return 0
        with tempfile.TemporaryDirectory() as tmp:
            stale = [p.name for p in build_exercises(args.solutions, tmp)
                     if not (args.exercises / p.name).exists()
                     or (args.exercises / p.name).read_bytes() != p.read_bytes()]
    except (ExerciseFormatError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for name in stale:
        print(f"{args.exercises / name} is out of date: run `make exercises`", file=sys.stderr)
    return 1 if stale else 0


def run_grade(args: argparse.Namespace) -> int:
    """Grade every submission into the gradebook (appending, resumable); exit 1 if some could not be
    graded, 3 on grader errors (not the students' fault), 2 on usage errors."""
    from .grader import UsageError, grade
    from .sandbox import Limits

    def progress(rows) -> None:
        total, possible = sum(r.points for r in rows), sum(r.max_points for r in rows)
        print(f"{rows[0].student} ch{rows[0].chapter}: {total:g}/{possible:g}", flush=True)

    if args.jobs < 1 or args.timeout <= 0 or args.max_output <= 0 or args.max_memory < 0:
        print("error: --jobs, --timeout and --max-output must be positive, --max-memory at least 0", file=sys.stderr)
        return 2
    try:
        run = grade(args.submissions, key_dir=args.key_dir, timeout=args.timeout, max_output=args.max_output,
                    chapter=args.chapter, jobs=args.jobs, out=args.out, feedback_dir=args.feedback_dir,
                    limits=Limits(memory_mb=args.max_memory), isolation=args.isolation,
                    log=lambda line: print(line, flush=True), progress=progress)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - the gradebook keeps every finished submission; say why we stopped
        print(f"grader error: {type(err).__name__}: {err} (rows already in {args.out} are kept; rerun to "
              "grade the rest)", file=sys.stderr)
        return 3
    if run.skipped:
        print(f"skipped {len(run.skipped)} submissions already in {args.out}")
    print(f"{args.out}: {len(run.rows)} new rows")
    for warning in run.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for problem in run.problems:
        print(f"could not grade {problem}", file=sys.stderr)
    for error in run.errors:
        print(f"grader error: {error}", file=sys.stderr)
    return run.exit_code


def register(subparsers) -> None:
    """Add the ``build-exercises`` and ``grade`` commands."""
    p = subparsers.add_parser("build-exercises", help="generate exercises/ from solutions/",
                              description=run_build.__doc__)
    p.add_argument("solutions", type=Path, help="folder with chNN_exercises.ipynb (the single source)")
    p.add_argument("exercises", type=Path, help="folder for the generated student notebooks")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if a notebook is stale")
    p.set_defaults(func=run_build)

    g = subparsers.add_parser("grade", help="grade student notebooks into a CSV gradebook",
                              description=run_grade.__doc__)
    g.add_argument("submissions", nargs="+", type=Path, metavar="SUBMISSION.ipynb")
    g.add_argument("--out", type=Path, required=True,
                   help="CSV gradebook (appended to; a rerun skips students already in it)")
    g.add_argument("--key-dir", type=Path, default=Path("solutions"),
                   help="folder with the keys chNN_exercises.ipynb (default: solutions)")
    g.add_argument("--timeout", type=float, default=60, help="seconds per question (default: 60)")
    g.add_argument("--max-output", type=int, default=1_000_000,
                   help="bytes of output allowed per question (default: 1000000)")
    g.add_argument("--feedback-dir", type=Path, help="also write one Markdown feedback file per student")
    g.add_argument("--chapter", type=_chapter, help="chapter NN for submissions whose metadata lost it")
    g.add_argument("--jobs", type=int, default=1, help="questions graded in parallel (default: 1)")
    g.add_argument("--max-memory", type=int, default=4096,
                   help="MB of address space per kernel process, 0 for no limit (default: 4096)")
    g.add_argument("--isolation", choices=("auto", "require", "none"), default="auto",
                   help="auto: the strongest sandbox this machine allows; require: refuse to grade without "
                        "its own uid and namespaces per kernel; none: run kernels as yourself (default: auto)")
    g.set_defaults(func=run_grade)
