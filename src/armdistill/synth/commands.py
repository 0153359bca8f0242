"""``armdistill synth OUT --minutes M --seed S [--workers N] [--task speech|ks] [--speakers demo|wide]
[--augment]``."""

from __future__ import annotations

import argparse
import os
import sys

from armdistill.synth.corpus import TASKS, generate, load_meta
from armdistill.synth.espeak import EspeakUnavailableError
from armdistill.synth.speakers import SPEAKER_TABLES


def _default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="generate the synthetic English speech corpus (eSpeak NG)",
        description="Generate synthetic English speech with eSpeak NG: manifests, phone/word/speaker labels "
        "and alignments (--task speech), or a keyword-spotting set (--task ks). Does nothing when OUT "
        "already holds the corpus for the same arguments.",
    )
    parser.add_argument("out", help="output directory")
    parser.add_argument("--minutes", type=float, required=True, help="total audio to generate, in minutes")
    parser.add_argument("--seed", type=int, default=0, help="seed for sentences, speaker splits and clip variation")
    parser.add_argument("--workers", type=int, default=_default_workers(), help="synthesis processes")
    parser.add_argument("--task", choices=TASKS, default="speech", help="speech corpus or keyword spotting")
    parser.add_argument("--speakers", choices=SPEAKER_TABLES, default="demo",
                        help="speaker table: demo (16 voice variants, moderate prosody) or wide (every "
                        "variant, wide rate/pitch/range; fixed held-out test variants)")
    parser.add_argument("--augment", action="store_true",
                        help="augment every utterance (noise, speed, reverberation, band-limiting, gain), seeded")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    before = load_meta(args.out, args.task)
    try:
        meta = generate(args.out, args.minutes, seed=args.seed, workers=args.workers, task=args.task,
                        speakers=args.speakers, augment=args.augment)
    except EspeakUnavailableError as err:
        print(f"armdistill synth: error: {err}", file=sys.stderr)
        return 2
    if before is not None and before == meta:
        print(f"{args.out}: {args.task} corpus already generated with these arguments")
        return 0
    for split, count in meta["counts"].items():
        speakers = len(meta["speakers"][split])
        print(f"{split}: {count['utterances']} utterances, {count['seconds'] / 60:.1f} min, {speakers} speakers")
    rejected = sum(meta["rejected"].values())
    print(f"rejected {rejected} utterances {meta['rejected']}; {meta['wall_seconds']:.1f} s")
    return 0
