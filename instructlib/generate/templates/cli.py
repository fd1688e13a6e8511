"""Chapter 06: `instructlib generate templates` — render inputs through a template bank or a PromptSource file.

    instructlib generate templates --bank NAME|--promptsource FILE [--inputs FILE] --out FILE
                                   [--per-input K] [--seed S] [--language en|zh] [--lint]

Bad input (a missing file, a malformed line, a field the templates need) prints
``file:line: field: problem`` and exits with status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import sys

from .render import RenderError, check_fields, read_examples, render_to_jsonl
from .bank_data import bank_examples
from .lint import lint_templates
from .promptsource import TemplateError, bank_names, load_bank, load_promptsource


def register_cli(subparsers) -> None:
    """Add ``instructlib generate templates`` (render inputs through a bank or a PromptSource file)."""
    p = subparsers.add_parser(
        "templates", help="render inputs through prompt templates into instruction records (chapter 06)",
        description="Render every input through K templates into Alpaca records with provenance "
                    "(template id, source id), deduplicated, written through a resumable JSONL stage.")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--bank", metavar="NAME", help="a course bank: " + ", ".join(bank_names()))
    which.add_argument("--promptsource", metavar="FILE", help="a PromptSource templates.yaml")
    p.add_argument("--inputs", metavar="FILE",
                   help="JSONL of examples (one dict of template fields per line; optional 'id'); "
                        "default for --bank: the bank's own sample inputs")
    p.add_argument("--out", metavar="FILE", help="output JSONL (appended to and resumed if it exists)")
    p.add_argument("--per-input", type=int, default=1, metavar="K", help="templates drawn per input (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--language", help="use only templates whose prompt is in this language (en, zh)")
    p.add_argument("--lint", action="store_true", help="lint the templates on the inputs instead of rendering")
    p.set_defaults(func=_run_cli)


def _run_cli(args: argparse.Namespace) -> int:
    try:
        return run_template_cli(args)
    except (TemplateError, RenderError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def run_template_cli(args: argparse.Namespace) -> int:
    """``instructlib generate templates``: render (or ``--lint``) and report; 0 ok, 1 lint errors, 2 bad input."""
    templates = load_bank(args.bank) if args.bank else load_promptsource(args.promptsource)
    if args.language:
        templates = [t for t in templates if t.language == args.language]
        if not templates:
            raise RenderError(f"no templates with language {args.language!r}")
    if args.inputs:
        examples, where = read_examples(args.inputs), args.inputs
    elif args.bank:
        examples, where = bank_examples(args.bank, "train", 50, seed=args.seed), f"<bank {args.bank}>"
    else:
        raise RenderError("--inputs FILE is required with --promptsource")
    if not examples:
        raise RenderError(f"{where}: no examples")
    if args.lint:
        findings = lint_templates(templates, examples[:50])
        for finding in findings:
            print(finding)
        errors = sum(f.severity == "error" for f in findings)
        print(f"{len(templates)} templates, {len(findings)} findings ({errors} errors)")
        return 1 if errors else 0
    if not args.out:
        raise RenderError("--out FILE is required (or use --lint)")
    check_fields(templates, examples, where)
    stats = render_to_jsonl(templates, examples, args.out, per_input=args.per_input, seed=args.seed)
    for message in stats.errors[:20]:
        print(f"warning: {message}")
    print(f"{args.out}: {stats}")
    return 0
