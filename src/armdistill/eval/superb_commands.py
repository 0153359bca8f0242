"""``armdistill superb`` (s3prl's SUPERB runner on our upstream), ``armdistill report`` (one table
and figure over several runs) and ``armdistill phonemize`` (SUPERB PR labels for LibriSpeech)."""

from __future__ import annotations

import argparse
import json

from armdistill.data import lexicon_commands
from armdistill.eval.report import build_report
from armdistill.eval.superb import SUPERB_TASKS, run_superb
from armdistill.eval.upstream import STUDENT_FEATURES


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "superb",
        help="run s3prl's SUPERB downstream runner on a student or teacher",
        description="Registers the upstream in s3prl's hub and runs s3prl's run_downstream.py with "
        "-u NAME -k UPSTREAM -d DOWNSTREAM -c CONFIG plus the runner arguments after '--', e.g. "
        "armdistill superb --task asr --upstream runs/x/student -- -m train -n asr_x --device cpu. "
        "Needs s3prl in this environment (see docs/s3prl-venv.md).",
    )
    p.add_argument("--task", required=True, choices=sorted(SUPERB_TASKS))
    p.add_argument("--upstream", required=True, help="student directory or preset, or a teacher source")
    p.add_argument("--student-features", choices=STUDENT_FEATURES, default="hidden",
                   help="for a student: layer outputs (hidden, default) or projection-head outputs")
    p.add_argument("--name", default="armdistill", help="upstream name in s3prl's hub (-u)")
    p.add_argument("--s3prl-root", default=None,
                   help="s3prl/ folder of an s3prl checkout (run_downstream.py, downstream/*/config.yaml); "
                   "default: the installed s3prl package")
    p.add_argument("--dry-run", action="store_true", help="check and register, print the runner argv, do not run")
    p.add_argument("runner_args", nargs=argparse.REMAINDER, help="'--' then s3prl runner arguments")
    p.set_defaults(func=_superb)

    p = subparsers.add_parser(
        "report",
        help="one markdown table and one plot over several runs, with published SUPERB rows",
        description="Each RUN_DIR holds a student directory (distill.json) and/or probe outputs "
        "(metrics.json from 'armdistill probe --out'). Writes OUT/report.md and OUT/report.png.",
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", required=True, help="directory for report.md and report.png")
    p.add_argument("--names", nargs="+", default=None, help="row names, one per RUN_DIR (default: folder names)")
    p.add_argument("--no-published", action="store_true", help="leave out the published rows")
    p.add_argument("--seconds", type=float, default=10.0, help="input length for the MAC count (default 10)")
    p.set_defaults(func=_report)

    lexicon_commands.register(subparsers)


def _superb(args: argparse.Namespace) -> int:
    runner_args = args.runner_args[1:] if args.runner_args[:1] == ["--"] else args.runner_args
    argv = run_superb(args.task, args.upstream, runner_args, args.student_features, args.name,
                      args.s3prl_root, args.dry_run)
    if args.dry_run:
        print(json.dumps(argv))
    return 0


def _report(args: argparse.Namespace) -> int:
    result = build_report(args.run_dirs, args.out, args.names, not args.no_published, args.seconds)
    print(result["markdown"].read_text())
    print(f"wrote {result['markdown']}" + (f" and {result['figure']}" if result["figure"] else ""))
    return 0
