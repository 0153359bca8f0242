"""``armdistill probe``: a SUPERB-protocol probe of a frozen upstream."""

from __future__ import annotations

import argparse
import json
import sys

from armdistill.config import apply_overrides, load_yaml
from armdistill.eval.probe import TASKS, ProbeConfig, run_probe
from armdistill.eval.upstream import STUDENT_FEATURES


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "probe",
        help="train a SUPERB-style probe (pr, asr, ks, sid) on a frozen upstream",
        description="Frozen upstream -> learned weighted sum of its layers -> task head. Features are "
        "cached per (upstream, manifest); the upstream is a student directory or preset, an exported "
        ".onnx model or ONNX export directory, a teacher source, or mfcc / mfcc-context / fbank.",
    )
    p.add_argument("--task", required=True, choices=sorted(TASKS))
    p.add_argument("--upstream", required=True, help="student dir, preset, .onnx model or ONNX export dir, teacher source, mfcc, "
                   "mfcc-context or fbank")
    p.add_argument("--train", required=True, help="train manifest (.tsv with label files beside it)")
    p.add_argument("--valid", required=True, help="validation manifest (model selection)")
    p.add_argument("--test", required=True, help="test manifest (reported metric)")
    p.add_argument("--out", default=None, help="directory for metrics.json and layer_weights.png")
    p.add_argument("--student-features", choices=STUDENT_FEATURES, default=None,
                   help="for a student: raw layer outputs (hidden, default) or projection-head outputs")
    p.add_argument("--config", default=None, help="YAML file of ProbeConfig keys")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a ProbeConfig key (repeatable), e.g. --set lr=0.003")
    p.add_argument("--cache-dir", default=None, help="feature cache directory (default $ARMDISTILL_CACHE/features)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch log")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    data = load_yaml(args.config) if args.config else {}
    if args.student_features is not None:
        data["student_features"] = args.student_features
    if args.cache_dir is not None:
        data["cache_dir"] = args.cache_dir
    cfg = ProbeConfig.from_dict(apply_overrides(data, args.overrides))
    log = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    result = run_probe(args.task, args.upstream, args.train, args.valid, args.test, args.out, cfg, log)
    summary = {k: result[k] for k in ("task", "upstream", "student_features", "metric", "valid", "test",
                                      "test_scores", "best_epoch", "epochs_run", "layer_weights")}
    print(json.dumps(summary, indent=2))
    return 0
