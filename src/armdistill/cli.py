"""Compress Transformer speech models into small students with attention-map reuse and masking distillation.

Each command lives beside the code it drives and exposes ``register(subparsers)``; this file
only lists them and turns a user's mistake into one line."""

from __future__ import annotations

import argparse
import importlib
import sys

from armdistill.console import quiet_libraries
from armdistill.errors import UserError

COMMAND_MODULES = (
    "armdistill.models.commands",
    "armdistill.data.commands",
    "armdistill.teachers.commands",
    "armdistill.eval.commands",
    "armdistill.distill.commands",
    "armdistill.pretrain.commands",
    "armdistill.synth.commands",
    "armdistill.demo.commands",
    "armdistill.eval.superb_commands",
    "armdistill.eval.report_commands",
    "armdistill.data.lexicon_commands",
    "armdistill.export.commands",
    "armdistill.eval.bench_commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="armdistill", description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", action="store_true", help="also show libraries' warnings and info messages")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def error_line(err: UserError) -> str:
    """The message of ``err`` on one line.

    A DataLoader worker re-raises an error as its type with the worker's whole traceback as the
    message; the user's message is what follows the last ``module.Type: `` in it.
    """
    text = str(err)
    marker = f"{type(err).__module__}.{type(err).__qualname__}: "
    if "Original Traceback" in text and marker in text:
        text = text.rsplit(marker, 1)[1]
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    """Run a command; a :class:`UserError` becomes one ``error:`` line and exit code 2, anything
    else is a bug and keeps its traceback."""
    args = build_parser().parse_args(argv)
    if not args.verbose:
        quiet_libraries()
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"armdistill {args.command}: error: {error_line(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
