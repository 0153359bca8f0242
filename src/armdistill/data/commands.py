"""``armdistill manifest``: TSV manifests and transcripts from LibriSpeech split directories."""

from __future__ import annotations

import argparse
from pathlib import Path

from armdistill.config import ConfigError
from armdistill.data.librispeech import build_split_manifest


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "manifest",
        help="build SPLIT.tsv/.wrd/.ltr from LibriSpeech split directories",
        description="Build fairseq-style manifests (SPLIT.tsv, SPLIT.wrd, SPLIT.ltr) from LibriSpeech split "
        "directories; sizes come from the audio headers.",
    )
    parser.add_argument("splits", nargs="+", type=Path, metavar="SPLIT_DIR", help="e.g. LibriSpeech/train-clean-100")
    parser.add_argument("--out", required=True, type=Path, help="directory for the manifests")
    parser.add_argument("--sample-rate", type=int, default=16000, help="rate the sizes are recorded at (Hz)")
    parser.add_argument(
        "--no-resample", action="store_true", help="fail on audio at another rate instead of sizing it as resampled"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    names = [split.resolve().name for split in args.splits]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"split directories share the name(s) {', '.join(duplicates)}; their manifests would collide")
    for split in args.splits:
        summary = build_split_manifest(
            split, args.out, sample_rate=args.sample_rate, resample=not args.no_resample, progress=not args.quiet
        )
        labels = " + .wrd/.ltr" if summary.labelled else " (no transcripts)"
        print(f"{summary.manifest}{labels}: {summary.utterances} utterances, {summary.seconds / 3600:.2f} h")
    return 0
