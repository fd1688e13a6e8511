"""`instructlib build-exercises SOLUTIONS EXERCISES` and `instructlib grade SUBMISSION... --out CSV`."""
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
    """Grade every submission, write the gradebook (and feedback files); 1 if some could not be graded."""
    from .grader import grade, write_feedback, write_gradebook

    def progress(row) -> None:
        print(f"{row.student} ch{row.chapter} {row.question}: {row.points:g}/{row.max_points:g}", flush=True)

    try:
        rows, problems = grade(args.submissions, key_dir=args.key_dir, timeout=args.timeout,
                               max_output=args.max_output, chapter=args.chapter, jobs=args.jobs,
                               progress=progress)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    write_gradebook(rows, args.out)
    print(f"wrote {args.out} ({len(rows)} rows)")
    if args.feedback_dir:
        print(f"wrote {len(write_feedback(rows, args.feedback_dir))} feedback files to {args.feedback_dir}")
    for problem in problems:
        print(f"could not grade {problem}", file=sys.stderr)
    return 1 if problems else 0


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
    g.add_argument("--out", type=Path, required=True, help="CSV gradebook to write")
    g.add_argument("--key-dir", type=Path, default=Path("solutions"),
                   help="folder with the keys chNN_exercises.ipynb (default: solutions)")
    g.add_argument("--timeout", type=float, default=60, help="seconds per question (default: 60)")
    g.add_argument("--max-output", type=int, default=1_000_000,
                   help="bytes of output allowed per question (default: 1000000)")
    g.add_argument("--feedback-dir", type=Path, help="also write one Markdown feedback file per student")
    g.add_argument("--chapter", type=_chapter, help="chapter NN for submissions whose metadata lost it")
    g.add_argument("--jobs", type=int, default=1, help="questions graded in parallel (default: 1)")
    g.set_defaults(func=run_grade)
