"""Chapter 09: `instructlib evaluate --model NAME --data FILE --metrics em,rougeL,...` from the command line.

``--data`` is a record file (Alpaca JSON/JSONL, seed tasks or chat JSONL, as ``instructlib validate``
reads them) or a built-in verifiable test set: ``verifiable:test`` (new inputs, training phrasings)
or ``verifiable:heldout`` (new inputs and held-out phrasings). Results are cached like the harness's.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _dataset(spec: str, n_per_family: int):
    """Items for one ``--data`` argument (raises DataError with file:line for a bad file)."""
    if spec.startswith("verifiable:"):
        from instructlib.data.verifiable import make_examples

        kind = spec.split(":", 1)[1]
        if kind not in ("test", "heldout"):
            raise ValueError(f"--data {spec}: use verifiable:test or verifiable:heldout")
        return make_examples("test", n_per_family, seed=0, phrasings="heldout" if kind == "heldout" else "train")
    from instructlib.data.io import load_records

    if not Path(spec).exists():
        raise ValueError(f"{spec}: no such file")
    return load_records(spec)


def run_evaluate(args: argparse.Namespace) -> int:
    """Evaluate each model on each data set and print (and optionally write) the table."""
    from instructlib.data.records import DataError
    from instructlib.evaluation.suite import METRICS

    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        print(f"error: --metrics: unknown {unknown or 'empty list'}; known: {', '.join(METRICS)}", file=sys.stderr)
        return 2
    try:
        datasets = {spec: _dataset(spec, args.n_per_family) for spec in args.data}
    except (DataError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not all(datasets.values()):
        print(f"error: empty data set(s): {[k for k, v in datasets.items() if not v]}", file=sys.stderr)
        return 2
    from instructlib.evaluation.harness import evaluate
    from instructlib.models import load_llm

    models = {}
    for name in args.model:
        try:
            models[name] = load_llm(name)
        except Exception as err:  # a model that cannot load: say which and why, no traceback
            print(f"error: --model {name}: {type(err).__name__}: {err}", file=sys.stderr)
            return 2
    table = evaluate(models, datasets, metrics, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                     cache=not args.no_cache, progress=not args.quiet)
    frame = table.to_pandas()
    print(frame.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    print(f"cache: {table.cache_hits} hits, {table.cache_misses} misses")
    if args.out:
        from instructlib.files import atomic_write_text

        atomic_write_text(args.out, frame.to_csv(index=False))
        print(f"table written to {args.out}")
    return 0


def register(subparsers) -> None:
    """Add the `evaluate` command to the `instructlib` parser."""
    p = subparsers.add_parser("evaluate", help="score models on data: em, strict, loose, rougeL, bleu, chrf, ppl",
                              description=__doc__.split("\n", 1)[1].strip(), formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog="exit status: 0 success; 2 bad arguments, an unreadable data file (file:line: "
                                     "problem) or a model that cannot be loaded.")
    p.add_argument("--model", action="append", required=True, metavar="NAME",
                   help="course model, hub id or directory (repeatable)")
    p.add_argument("--data", action="append", required=True, metavar="FILE",
                   help="record file, or verifiable:test / verifiable:heldout (repeatable)")
    p.add_argument("--metrics", default="em", help="comma-separated metric names (default: em)")
    p.add_argument("--n-per-family", type=int, default=8, help="items per family for verifiable:* (default 8)")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--out", type=Path, help="also write the table as CSV")
    p.add_argument("--no-cache", action="store_true", help="recompute instead of reading the on-disk cache")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run_evaluate)
