"""``armdistill`` command line. Each command lives beside the code it drives and exposes
``register(subparsers)``; this file only lists them."""

from __future__ import annotations

import argparse
import importlib
import sys

from armdistill.config import ConfigError
from armdistill.io.safe_pickle import UnsafeCheckpointError

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
    "armdistill.export.commands",
    "armdistill.eval.bench_commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="armdistill", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ConfigError, FileNotFoundError, ValueError, UnsafeCheckpointError) as err:
        print(f"armdistill {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
