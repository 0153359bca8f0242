"""``armdistill info`` and ``armdistill import-release``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from armdistill.config import ConfigError
from armdistill.models.attention import REUSE_MODES
from armdistill.models.macs import gmacs_per_second
from armdistill.models.release import RELEASE_PRESETS, import_release
from armdistill.models.student import Student


def model_info(student: Student, seconds: float = 10.0) -> dict:
    student.eval()
    return {
        **student.num_parameters(),
        "gmacs_per_second": gmacs_per_second(student, seconds),
        "seconds": seconds,
        "frame_rate_hz": student.frame_rate_hz,
        "reuse_pattern": student.config.reuse_pattern,
        "reuse_mode": student.reuse_mode,
    }


def _info(args: argparse.Namespace) -> int:
    if (args.path is None) == (args.preset is None):
        raise ConfigError("give either a model directory PATH or --preset NAME")
    student = Student.from_preset(args.preset) if args.preset else Student.from_pretrained(args.path)
    if args.reuse_mode:
        student.reuse_mode = args.reuse_mode
    info = model_info(student, args.seconds)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            print(f"{key:>18}: {value}")
    return 0


def _import_release(args: argparse.Namespace) -> int:
    student = import_release(args.ckpt, preset=args.preset)
    student.save_pretrained(args.out_dir)
    counts = student.num_parameters()
    print(f"wrote {args.out_dir} (reuse_mode=release, {counts['params_total']:,} parameters)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("info", help="parameter and MAC counts of a student")
    p.add_argument("path", nargs="?", type=Path, help="a directory written by save_pretrained")
    p.add_argument("--preset", help="a student preset name instead of a directory")
    p.add_argument("--reuse-mode", choices=REUSE_MODES, help="count MACs in this mode")
    p.add_argument("--seconds", type=float, default=10.0, help="input length for the MAC count (default 10)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_info)

    p = subparsers.add_parser("import-release", help="convert a released Lightning .ckpt to our format")
    p.add_argument("ckpt", type=Path)
    p.add_argument("out_dir", type=Path)
    p.add_argument(
        "--preset", choices=RELEASE_PRESETS + ("armwavlm-s",), help="default: inferred from tensor shapes"
    )
    p.set_defaults(func=_import_release)
