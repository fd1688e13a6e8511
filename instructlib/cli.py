"""`instructlib ...` command line. Each command lives in its own module, which exposes
``register(subparsers)`` adding a parser whose ``func(args) -> int`` runs it."""
from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES = (
    "instructlib.grading.cli",  # build-exercises, grade
    "instructlib.data.cli",  # validate, lint
    "instructlib.generate.cli",  # generate templates|backtranslate|backward
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="instructlib", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
