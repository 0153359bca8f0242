"""``armdistill distill``: train a student from a YAML recipe (masking, layer-to-layer or DistilHuBERT distillation)."""

from __future__ import annotations

import argparse
import sys

import yaml

from armdistill.distill.config import load_config, resolved_dict


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "distill",
        help="train a student by distillation (masking, layer-to-layer or DistilHuBERT)",
        description="Train a student from a recipe; loss.objective picks masking, layer or distilhubert. "
                    "KEY=VALUE arguments override recipe entries (dotted keys).",
    )
    parser.add_argument("--config", required=True, help="YAML recipe, e.g. configs/armhubert-960h.yaml")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config (objective, batch, accumulation, schedule) and exit without loading anything")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--resume", nargs="?", const="last", default=None, metavar="CKPT",
                       help="continue from the newest loadable checkpoint in output_dir/checkpoints, or from the "
                            "checkpoint given; the config may differ in trainer.max_steps only")
    start.add_argument("--overwrite", action="store_true",
                       help="replace the run in a non-empty output_dir (refused otherwise)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. teacher.path=hubert_base_ls960.pt")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        yaml.safe_dump(resolved_dict(cfg), sys.stdout, sort_keys=False, default_flow_style=None)
        return 0
    # imported here so that --print-config stays fast and loads no training stack
    from armdistill.distill.train import run_distillation

    out = run_distillation(cfg, resume=args.resume, overwrite=args.overwrite)
    print(f"student written to {out}")
    return 0
