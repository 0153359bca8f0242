"""``armdistill export STUDENT_DIR OUT --format hf|onnx``."""

from __future__ import annotations

import argparse
import importlib

# format -> module whose ``export(student_dir, out, args)`` writes it
FORMATS = {"hf": "armdistill.export.hf", "onnx": "armdistill.export.onnx"}


def _export(args: argparse.Namespace) -> int:
    module = importlib.import_module(FORMATS[args.format])
    out = module.export(args.student, args.out, args)
    print(f"wrote {out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="export a student for transformers (hf) or ONNX Runtime (onnx)")
    p.add_argument("student", help="student directory (save_pretrained / import-release output) or Hub id")
    p.add_argument("out", help="output directory")
    p.add_argument("--format", choices=sorted(FORMATS), required=True)
    p.add_argument("--quantize", choices=["int8"], default=None, help="onnx only: also write model.int8.onnx")
    p.add_argument("--probes", action="append", metavar="PATH",
                   help="hf only: a metrics.json of 'armdistill probe', or a directory searched for them, whose results "
                        "for this student go in the model card (repeatable; the student's own run is always searched)")
    p.set_defaults(func=_export)
