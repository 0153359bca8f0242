"""``armdistill demo [--quick | --ablation] [--out DIR] [--config FILE] [KEY=VALUE ...]``."""

from __future__ import annotations

import argparse

from armdistill.demo.config import default_config_path, load_demo_config


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="synthesise speech, distil an ARM student from the shipped teacher, probe and report",
        description="Synthetic corpus (cached) -> masking distillation of an ARM student from the shipped "
        "teacher -> phone-recognition probes of teacher, student, untrained student and MFCC baselines -> "
        "report.md, report.json and figures in --out. KEY=VALUE arguments override the demo file (dotted keys, "
        "e.g. distill.trainer.max_steps=50 probe.settings.epochs=20).",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="shorter training and probes (configs/demo-quick.yaml)")
    mode.add_argument("--ablation", action="store_true",
                      help="variants of the recipe (all-attention student, layer-to-layer objective, release reuse, "
                      "raw targets, mask prob 0.4) at N and 2N steps, paired by seed (configs/demo-ablation.yaml; "
                      "ablation.jobs=K runs K at once)")
    parser.add_argument("--out", default=None, help="output directory (default demo_out/, or demo_ablation/)")
    parser.add_argument("--config", default=None, help="demo file (default configs/demo.yaml or its --quick/--ablation twin)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="--ablation: recipe seeds per variant")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. distill.trainer.max_steps=50")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.ablation:
        from armdistill.demo.ablation import run_ablation

        cfg = load_demo_config(args.config or default_config_path("ablation"), args.overrides)
        table = run_ablation(cfg, args.out or "demo_ablation", args.seeds)
        print(table)
        return 0
    from armdistill.demo.pipeline import run_demo

    cfg = load_demo_config(args.config or default_config_path("quick" if args.quick else "default"), args.overrides)
    report = run_demo(cfg, args.out or "demo_out")
    per = report["per"]
    print(" ".join(f"{name} {value:.3f}" for name, value in per.items()), f"(PER; {report['wall_seconds']:.0f} s)")
    return 0
