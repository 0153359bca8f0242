"""``armdistill report``: one table and figure over several runs."""

from __future__ import annotations

import argparse

from armdistill.eval.report import build_report


def register(subparsers: argparse._SubParsersAction) -> None:
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



def _report(args: argparse.Namespace) -> int:
    result = build_report(args.run_dirs, args.out, args.names, not args.no_published, args.seconds)
    print(result["markdown"].read_text())
    print(f"wrote {result['markdown']}" + (f" and {result['figure']}" if result["figure"] else ""))
    return 0
