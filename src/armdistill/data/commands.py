"""``armdistill manifest`` (TSV manifests and transcripts from audio folders) and
``armdistill check-data`` (decode every file of a manifest and list what is unusable)."""

from __future__ import annotations

import argparse
from pathlib import Path

from armdistill.config import ConfigError
from armdistill.data.check import check_manifest, default_workers, write_clean
from armdistill.data.corpus import AUDIO_EXTENSIONS, build_manifest
from armdistill.frames import MIN_SAMPLES, SAMPLE_RATE


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "manifest",
        help="build NAME.tsv (+ .wrd/.ltr) from folders of audio files",
        description="Build fairseq-style manifests (NAME.tsv, and NAME.wrd/NAME.ltr with transcripts) from folders of "
        f"audio files ({', '.join(AUDIO_EXTENSIONS)}, recursive), one manifest per folder, named after it; sizes come "
        "from the audio headers. Transcripts: --transcripts TSV, LibriSpeech's *.trans.txt, or sidecar NAME.txt files.",
    )
    parser.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="e.g. LibriSpeech/train-clean-100 or my_corpus/train")
    parser.add_argument("--out", required=True, type=Path, help="directory for the manifests")
    parser.add_argument("--glob", default=None, metavar="PATTERN",
                        help="audio files to take, relative to each DIR (e.g. '**/*.flac'); default: every audio file")
    parser.add_argument("--transcripts", type=Path, default=None, metavar="TSV",
                        help="id<TAB>text lines; an id is the path under DIR without extension, or a unique bare name")
    _audio_arguments(parser)
    parser.set_defaults(func=run_manifest)

    check = subparsers.add_parser(
        "check-data",
        help="decode every file of manifests and list every unusable one",
        description="Decode every audio file of the manifests, in parallel, and report each problem (missing, "
        "undecodable, not mono, wrong sample count, non-finite samples, shorter than one frame) as "
        "MANIFEST:LINE: FILE: PROBLEM. Exit code 1 when any file is unusable.",
    )
    check.add_argument("manifests", nargs="+", type=Path, metavar="MANIFEST")
    check.add_argument("--workers", type=int, default=default_workers(), help="decoding processes (1: none)")
    check.add_argument("--min-samples", type=int, default=MIN_SAMPLES,
                       help="shortest usable file in samples, one frame of the model's CNN (wav2vec 2.0: 400)")
    check.add_argument("--write-clean", type=Path, default=None, metavar="DIR",
                       help="write each manifest without its unusable files (and its label files) to DIR")
    _audio_arguments(check)
    check.set_defaults(func=run_check)


def _audio_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sample-rate", type=int, default=SAMPLE_RATE, help="rate the sizes are recorded at (Hz)")
    parser.add_argument(
        "--no-resample", action="store_true", help="fail on audio at another rate instead of sizing it as resampled"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _unique_names(paths: list[Path], what: str) -> None:
    names = [path.resolve().name for path in paths]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"{what} share the name(s) {', '.join(duplicates)}; their outputs would collide")


def run_manifest(args: argparse.Namespace) -> int:
    _unique_names(args.dirs, "folders")
    for directory in args.dirs:
        summary = build_manifest(directory, args.out, args.glob, args.transcripts, sample_rate=args.sample_rate,
                                 resample=not args.no_resample, progress=not args.quiet)
        labels = f" + .wrd/.ltr ({summary.transcripts})" if summary.transcripts else " (no transcripts)"
        print(f"{summary.manifest}{labels}: {summary.utterances} utterances, {summary.seconds / 3600:.2f} h")
    return 0


def run_check(args: argparse.Namespace) -> int:
    if args.write_clean is not None:
        _unique_names(args.manifests, "manifests")
    unusable = 0
    for manifest in args.manifests:
        report = check_manifest(manifest, args.min_samples, args.sample_rate, not args.no_resample, args.workers,
                                progress=not args.quiet)
        for item in report.bad:
            print(item.error())
        print(f"{manifest}: {len(report.bad)} of {report.total} files unusable")
        if args.write_clean is not None:
            print(f"  clean manifest: {write_clean(report, args.write_clean)} ({report.total - len(report.bad)} files)")
        unusable += len(report.bad)
    return 1 if unusable else 0
