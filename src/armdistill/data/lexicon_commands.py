"""``armdistill phonemize``: phone labels (``SPLIT.phn``) for LibriSpeech manifests from a lexicon."""

from __future__ import annotations

import argparse
from pathlib import Path

from armdistill.data.lexicon import phonemize_manifest, read_lexicon


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "phonemize",
        help="write SPLIT.phn beside SPLIT.tsv from its .wrd and a pronunciation lexicon",
        description="Turn each manifest's word transcripts (SPLIT.wrd, from 'armdistill manifest') into "
        "39-phone ARPAbet sequences (SPLIT.phn) with a lexicon of 'WORD PH1 PH2 ...' lines, e.g. the "
        "g2p lexicons of s3prl's phone-recognition recipe. Stress digits are removed; the first "
        "pronunciation of a word wins.",
    )
    parser.add_argument("manifests", nargs="+", type=Path, metavar="SPLIT.tsv")
    parser.add_argument("--lexicon", required=True, type=Path, action="append",
                        help="lexicon file (repeatable; an earlier file's pronunciation wins)")
    parser.add_argument("--skip-missing", action="store_true",
                        help="drop utterances with words missing from the lexicon (needs --out) and report how many")
    parser.add_argument("--out", type=Path, default=None,
                        help="directory for the .phn (and, with dropped utterances, the filtered manifest and "
                        "labels); default: beside each manifest")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    lexicon: dict[str, tuple[str, ...]] = {}
    for path in args.lexicon:
        for word, phones in read_lexicon(path).items():
            lexicon.setdefault(word, phones)
    name = ", ".join(str(p) for p in args.lexicon)
    for manifest in args.manifests:
        summary = phonemize_manifest(manifest, lexicon, name, args.out, args.skip_missing)
        note = ""
        if summary.skipped:
            note = (f"; skipped {summary.skipped} utterance(s) with {len(summary.missing)} word(s) "
                    f"missing from the lexicon, e.g. {', '.join(w for w, _ in summary.missing.most_common(5))}")
        print(f"{summary.phones}: {summary.utterances} utterances{note}")
    return 0
