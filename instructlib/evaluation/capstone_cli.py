"""Chapter 09: `instructlib capstone build NAME...` — build the named fine-tuned models of the capstone.

``NAME`` is a ``load_model`` alias (``instructlib capstone list`` shows them): the first seed of one
capstone condition, trained with chapter 05's recipe at the active profile's sizes
(``INSTRUCTLIB_PROFILE``) and cached, so that ``load_model(NAME)`` (chapter 10) loads it in a second.
Exit status 0 when every model is built, 2 for an unknown name.
"""
from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    """Add ``capstone build`` and ``capstone list``."""
    parser = subparsers.add_parser("capstone", help="build the named fine-tuned models of chapter 09's capstone",
                                   description="Build the named fine-tuned models of chapter 09's capstone.\n\n"
                                   + __doc__.split("\n", 1)[1].strip().replace("``", ""),
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="capstone_command", required=True, metavar="ACTION")
    build = sub.add_parser("build", help="train (once) and cache the named models")
    build.add_argument("names", nargs="+", metavar="NAME", help="a fine-tuned alias, or 'all-models' for every one")
    build.add_argument("--quiet", action="store_true", help="no progress bars")
    build.set_defaults(func=run_build)
    listing = sub.add_parser("list", help="the aliases, what each is, and whether it is built")
    listing.set_defaults(func=run_list)


def run_list(args: argparse.Namespace) -> int:
    """Print every alias with its description and cache state."""
    from instructlib.models.loader import FINETUNED_ALIASES, finetuned_path

    for name, description in FINETUNED_ALIASES.items():
        built = "built" if (finetuned_path(name) / "meta.json").exists() else "not built"
        print(f"{name:30} {built:10} {description}")
    return 0


def run_build(args: argparse.Namespace) -> int:
    """Build every requested model (unknown names: exit 2 before anything is trained)."""
    from instructlib.models.loader import FINETUNED_ALIASES

    names = list(FINETUNED_ALIASES) if args.names == ["all-models"] else args.names
    unknown = [n for n in names if n not in FINETUNED_ALIASES]
    if unknown:
        print(f"error: unknown model name(s) {', '.join(unknown)}; known: {', '.join(FINETUNED_ALIASES)}",
              file=sys.stderr)
        return 2
    from instructlib.evaluation.capstone import capstone_model

    for name in names:
        print(f"{name}: {capstone_model(name, progress=not args.quiet)}")
    return 0
