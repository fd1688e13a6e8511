"""Chapter 08: `instructlib self-instruct`, Self-Instruct (and its Alpaca and Magpie variants) from the command line.

    instructlib self-instruct --seeds seeds.jsonl --num-instructions 200 --out data/si.jsonl \\
        --model smollm2-135m-instruct --batch-size 8 [--faithful]

Rerunning the same command after an interruption (Ctrl-C, kill -9, a full disk) continues where it
stopped; the funnel of the whole run is printed at the end. A rerun whose output no longer matches
its side files (one deleted, cut or replaced) stops with status 2 and the files to delete to start over.
"""
from __future__ import annotations

import argparse
import sys

EXIT = """\
outputs: OUT (Alpaca records with provenance), OUT's .pool.jsonl (the machine instruction pool) and
.rounds.jsonl (one row per finished round, with its funnel), all append-only JSON Lines.
exit status:
  0  the run finished (or stopped early after --patience rounds that kept nothing; see the funnel)
  2  the seeds file, the model or the settings cannot be used (printed as file:line: field: problem),
     or OUT and its side files disagree (printed as file: problem; to start over delete ...)"""


def register(subparsers) -> None:
    """Add the ``self-instruct`` command."""
    p = subparsers.add_parser(
        "self-instruct", help="grow an instruction set from seed tasks with a language model (chapter 08)",
        description=__doc__.split("\n\n")[0].removeprefix("Chapter 08: "), epilog=EXIT, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", metavar="FILE", default=None,
                   help="seed tasks in Self-Instruct's format (JSONL); default: the course's 131 seed tasks")
    p.add_argument("--num-instructions", type=int, required=True, metavar="N",
                   help="stop when the machine pool holds N instructions")
    p.add_argument("--out", required=True, metavar="FILE", help="output records (JSON Lines)")
    p.add_argument("--model", default="smollm2-135m-instruct",
                   help="a course model name, a directory or a hub id (default: smollm2-135m-instruct)")
    p.add_argument("--batch-size", type=int, default=8, metavar="B", help="prompts per round (default 8)")
    p.add_argument("--faithful", action="store_true",
                   help="reproduce the reference's filters exactly, including how they drop Chinese")
    p.add_argument("--method", choices=("self-instruct", "alpaca", "magpie"), default="self-instruct")
    p.add_argument("--language", choices=("en", "zh"), default=None, help="only seeds of this language")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--max-rounds", type=int, default=None, help="stop after this many rounds")
    p.add_argument("--patience", type=int, default=10,
                   help="stop after this many rounds in a row that keep nothing (default 10)")
    p.add_argument("--keep-truncated", action="store_true",
                   help="keep text cut off at the token limit (default: drop it, filter 'complete')")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load seeds, then the model, then run or resume; print the funnel."""
    from ...data.records import DataError
    from .loop import ResumeError, SelfInstruct, SelfInstructConfig, check_resume, load_seed_pool

    try:
        config = SelfInstructConfig(num_instructions=args.num_instructions, method=args.method,
                                    batch_size=args.batch_size, faithful=args.faithful, language=args.language,
                                    seed=args.seed, max_rounds=args.max_rounds, patience=args.patience,
                                    drop_truncated=not args.keep_truncated)
        seeds = load_seed_pool(args.seeds, args.language)
        check_resume(args.out, config)   # before loading the model: a run that cannot resume stops at once
    except (DataError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"{args.seeds}: error: {err.strerror or err}", file=sys.stderr)
        return 2
    from ...models import load_llm

    try:
        llm = load_llm(args.model)
    except Exception as err:  # noqa: BLE001 - any loading failure is a usage error here, not a traceback
        print(f"error: --model {args.model}: {type(err).__name__}: {err}", file=sys.stderr)
        return 2
    try:
        runner = SelfInstruct(llm, seeds, args.out, config)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        result = runner.run(progress=True)
    except ResumeError as err:   # a repeated round that differs from what a killed run wrote
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        runner.close()
    print(result.funnel)
    print(f"{result.machine_instructions} machine instructions after {result.rounds} rounds, "
          f"{result.records} records in {result.out} "
          f"({result.instructions_per_minute:.1f} kept instructions per minute of generation)")
    if result.machine_instructions < args.num_instructions:
        print(f"stopped short of {args.num_instructions}: the model's candidates did not pass the filters "
              f"(see the funnel above)", file=sys.stderr)
    return 0
