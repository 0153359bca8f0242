"""``armdistill convert-teacher SRC OUT_DIR``: write an original checkpoint as a transformers directory once."""

from __future__ import annotations

import argparse
from pathlib import Path

from armdistill.teachers.teacher import Teacher


def _convert_teacher(args: argparse.Namespace) -> int:
    teacher = Teacher.from_pretrained(args.src, normalize=args.normalize)
    teacher.save_pretrained(args.out_dir)
    print(
        f"wrote {args.out_dir}: {type(teacher.model).__name__}, {teacher.num_layers} layers, dim {teacher.dim}, "
        f"normalize={teacher.normalize}, fingerprint {teacher.fingerprint()}"
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "convert-teacher",
        help="convert a fairseq / unilm / s3prl teacher .pt (or a transformers directory) to a transformers directory",
    )
    p.add_argument("src", type=Path, help="a .pt checkpoint or a transformers model directory")
    p.add_argument("out_dir", type=Path, help="output directory (config, safetensors weights, preprocessor config)")
    p.add_argument(
        "--normalize", action=argparse.BooleanOptionalAction, default=None,
        help="override the checkpoint's waveform normalisation flag",
    )
    p.set_defaults(func=_convert_teacher)
