"""``armdistill pretrain-teacher``: a small HuBERT teacher from a synthetic corpus."""

from __future__ import annotations

import argparse
import json

from armdistill.config import apply_overrides, from_dict, to_dict
from armdistill.pretrain.hubert import PretrainConfig, pretrain


def _run(args: argparse.Namespace) -> int:
    base = {"corpus": str(args.corpus), "out_dir": str(args.out), "targets": args.targets}
    cfg = from_dict(PretrainConfig, apply_overrides(base, args.overrides))
    stats = pretrain(cfg)
    print(json.dumps({"config": to_dict(cfg), "stats": stats}, indent=2))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("pretrain-teacher", help="HuBERT masked-prediction pretraining of a small teacher")
    p.add_argument("--corpus", required=True, help="a directory written by `armdistill synth`")
    p.add_argument("--out", required=True, help="output directory (a transformers HubertModel)")
    p.add_argument("--targets", choices=["phones", "kmeans"], default="phones",
                   help="frame units: synthesiser phones (oracle units) or MFCC k-means clusters")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="PretrainConfig fields, e.g. steps=3000")
    p.set_defaults(func=_run)
