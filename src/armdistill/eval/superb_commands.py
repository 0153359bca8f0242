"""``armdistill superb``: s3prl's SUPERB runner on our upstream."""

from __future__ import annotations

import argparse
import json

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


def _superb(args: argparse.Namespace) -> int:
    runner_args = args.runner_args[1:] if args.runner_args[:1] == ["--"] else args.runner_args
    argv = run_superb(args.task, args.upstream, runner_args, args.student_features, args.name,
                      args.s3prl_root, args.dry_run)
    if args.dry_run:
        print(json.dumps(argv))
    return 0
