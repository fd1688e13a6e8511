"""Chapter 06: (chapters 06–08) `instructlib generate ...` and `instructlib self-instruct`: one subcommand per technique.

Each technique module in ``GENERATE_MODULES`` exposes ``register_cli(subparsers)``, adding its
parser under ``instructlib generate``; its ``func(args) -> int`` runs it.
"""
from __future__ import annotations

import importlib

GENERATE_MODULES: tuple[str, ...] = (
    "instructlib.generate.templates.cli",  # chapter 06: generate templates
    "instructlib.generate.backtranslation.roundtrip",  # chapter 07: generate backtranslate
    "instructlib.generate.backtranslation.backward",  # chapter 07: generate backward (instruction back-translation)
)


def register(subparsers) -> None:
    """Add the ``generate`` command group (one subcommand per technique module)."""
    p = subparsers.add_parser("generate", help="build instruction data automatically (chapters 06-08)",
                              description="Build instruction data automatically: one subcommand per technique.")
    sub = p.add_subparsers(dest="technique", required=True, metavar="TECHNIQUE")
    for name in GENERATE_MODULES:
        importlib.import_module(name).register_cli(sub)
