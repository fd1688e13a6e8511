"""Chapter 00: the `instructlib ...` command line, the tools at the top of the library.

Each command lives in its own module (``COMMAND_MODULES``), which exposes ``register(subparsers)``
adding a parser whose ``func(args) -> int`` runs it and returns the exit status."""
from __future__ import annotations

import argparse
import importlib
import os
import sys

COMMAND_MODULES = (
    "instructlib.grading.cli",  # build-exercises, grade
    "instructlib.data.cli",  # validate, lint
    "instructlib.generate.cli",  # generate templates|backtranslate|backward
    "instructlib.generate.self_instruct.cli",  # self-instruct
    "instructlib.evaluation.cli",  # evaluate
    "instructlib.evaluation.capstone_cli",  # capstone build|list
    "instructlib.deploy.cli",  # serve
)


DESCRIPTION = """\
Tools of the course "Large language models from theory to practice: building instructions":
check and lint instruction data (chapter 04), generate instruction data (chapters 06-08),
build and grade exercises (instructors), serve a model (chapter 10).
Run `instructlib COMMAND --help` for a command's inputs, formats and exit codes."""

EPILOG = """\
exit status: 0 success; 1 the input has problems (each printed as file:line: error: message);
2 a usage error or an input that cannot be read. No command should end in a Python traceback:
please report one if you see it."""


def _version() -> str:
    from . import __version__

    return f"instructlib {__version__} (Python {sys.version.split()[0]})"


def build_parser() -> argparse.ArgumentParser:
    """The `instructlib` parser with every command of ``COMMAND_MODULES``."""
    parser = argparse.ArgumentParser(prog="instructlib", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                title="commands")
    broken = []
    for name in COMMAND_MODULES:
        try:
            importlib.import_module(name).register(sub)
        except Exception as err:  # e.g. an optional dependency missing: the other commands still work
            broken.append(f"  {name}: {type(err).__name__}: {err}")
    if broken:
        parser.epilog += "\n\ncommands not available here (their module failed to load):\n" + "\n".join(broken)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; its return value is the exit status (Ctrl-C: 130, a closed pipe: quiet)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `instructlib lint big.jsonl | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
