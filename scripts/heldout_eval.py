#!/usr/bin/env python
"""Held-out PR evaluation of upstreams on speech unlike their training data.

  scripts/heldout_eval.py WORK [--upstream NAME=SOURCE ...] [--minutes M] [--flite-sentences N]

Three conditions, each a PR probe (``armdistill probe --task pr``, default settings):
  (a) espeak-unseen: eSpeak NG ``--speakers wide`` corpus; test voices (``WIDE_TEST_VARIANTS``)
      are in no training split and not in the demo speaker table the shipped teacher heard.
  (b) flite: speech of Flite (CMU, Debian package ``flite``), a synthesiser never used in
      training; the probe trains on the voices awb, kal16 and slt and is tested on rms.
      kal (8 kHz) is left out: it is kal16's speaker. Phone labels come from the text through
      the lexicon path (``data/lexicon.py``), with a lexicon of Flite's own pronunciations
      (``t2p``, one word at a time, stress removed, ``ax`` -> AH).
  (c) espeak-augmented: probe trained on the clean corpus of (a), tested on the same test
      utterances passed through ``synth --augment`` (noise, speed, reverberation, band-limit, gain).
Writes ``WORK/heldout.json``: test PER per condition and upstream.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from armdistill import DEFAULT_TEACHER
from armdistill.data.lexicon import phonemize_manifest, read_lexicon
from armdistill.data.manifest import label_path, write_manifest
from armdistill.data.phones import ARPABET
from armdistill.eval.probe import ProbeConfig, run_probe
from armdistill.synth import grammar
from armdistill.synth.corpus import generate

FLITE_TRAIN_VOICES = ("awb", "kal16", "slt")
FLITE_TEST_VOICES = ("rms",)
SAMPLE_RATE = 16000
_FLITE_TO_ARPABET = {"AX": "AH"}


def _flite_lexicon(path: Path) -> None:
    """Flite's pronunciation of every grammar word, as ``WORD PH1 PH2 ...`` lines."""
    lines = []
    for word in grammar.vocabulary():
        phones = subprocess.run(["t2p", word], capture_output=True, text=True, check=True).stdout.split()
        arpabet = [_FLITE_TO_ARPABET.get(p, p) for p in (re.sub(r"\d", "", p).upper() for p in phones if p != "pau")]
        unknown = set(arpabet) - set(ARPABET)
        if unknown:
            raise ValueError(f"t2p {word!r}: phones {sorted(unknown)} outside the ARPAbet set")
        lines.append(f"{word.upper()} {' '.join(arpabet)}")
    path.write_text("\n".join(lines) + "\n")


def _flite_split(out: Path, split: str, voices: tuple[str, ...], count: int, rng: np.random.Generator,
                 used: set[tuple[str, ...]]) -> None:
    rows, words = [], []
    for i in range(count):
        voice = voices[i % len(voices)]
        sentence = tuple(grammar.sentence(rng))
        while sentence in used:
            sentence = tuple(grammar.sentence(rng))
        used.add(sentence)
        rel = f"audio/{split}/{split}-{i:05d}-{voice}.flac"
        tmp = out / "tmp.wav"
        subprocess.run(["flite", "-voice", voice, "-t", " ".join(sentence), "-o", str(tmp)], check=True)
        audio, rate = sf.read(str(tmp), dtype="float32")
        if rate != SAMPLE_RATE:
            audio = resample_poly(audio, SAMPLE_RATE, rate).astype(np.float32)
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(out / rel), audio, SAMPLE_RATE, subtype="PCM_16")
        rows.append((rel, len(audio)))
        words.append(" ".join(sentence))
    write_manifest(out / f"{split}.tsv", ".", rows)
    label_path(out / f"{split}.tsv", "wrd").write_text("".join(w + "\n" for w in words))
    label_path(out / f"{split}.tsv", "spk").write_text("".join(r[0].split("-")[-1][:-5] + "\n" for r in rows))


def flite_corpus(out: Path, sentences: int, seed: int) -> Path:
    """Flite train / valid / test manifests with ``.wrd`` and lexicon-derived ``.phn``."""
    if (out / "test.phn").is_file():
        return out
    if shutil.which("flite") is None or shutil.which("t2p") is None:
        raise SystemExit("heldout_eval: Flite is missing; install it with `apt-get install -y flite`")
    out.mkdir(parents=True, exist_ok=True)
    _flite_lexicon(out / "lexicon.txt")
    rng, used = np.random.default_rng([seed, 16]), set()
    _flite_split(out, "train", FLITE_TRAIN_VOICES, sentences, rng, used)
    _flite_split(out, "valid", FLITE_TRAIN_VOICES, max(6, sentences // 6), rng, used)
    _flite_split(out, "test", FLITE_TEST_VOICES, max(10, sentences // 3), rng, used)
    lexicon = read_lexicon(out / "lexicon.txt")
    for split in ("train", "valid", "test"):
        phonemize_manifest(out / f"{split}.tsv", lexicon, "flite t2p lexicon")
    (out / "tmp.wav").unlink(missing_ok=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("work", type=Path)
    parser.add_argument("--upstream", action="append", default=[], metavar="NAME=SOURCE",
                        help="extra upstream (repeatable); always probed: the shipped teacher, mfcc, mfcc-context")
    parser.add_argument("--minutes", type=float, default=4.0, help="eSpeak NG corpus size")
    parser.add_argument("--flite-sentences", type=int, default=60, help="Flite training sentences")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--conditions", default="espeak-unseen,flite,espeak-augmented")
    args = parser.parse_args()
    work = args.work
    upstreams = {"teacher": str(DEFAULT_TEACHER), "mfcc": "mfcc", "mfcc-context": "mfcc-context"}
    upstreams.update(dict(item.split("=", 1) for item in args.upstream))

    clean, aug = work / "espeak-wide", work / "espeak-wide-aug"
    conditions = {}
    wanted = args.conditions.split(",")
    if "espeak-unseen" in wanted or "espeak-augmented" in wanted:
        generate(clean, args.minutes, seed=args.seed, workers=1, speakers="wide")
    if "espeak-unseen" in wanted:
        conditions["espeak-unseen"] = (clean / "train.tsv", clean / "valid.tsv", clean / "test.tsv")
    if "flite" in wanted:
        flite = flite_corpus(work / "flite", args.flite_sentences, args.seed)
        conditions["flite"] = (flite / "train.tsv", flite / "valid.tsv", flite / "test.tsv")
    if "espeak-augmented" in wanted:
        generate(aug, args.minutes, seed=args.seed, workers=1, speakers="wide", augment=True)
        conditions["espeak-augmented"] = (clean / "train.tsv", clean / "valid.tsv", aug / "test.tsv")

    results_path = work / "heldout.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    cfg = ProbeConfig(cache_dir=str(work / "cache"), num_threads=1)
    for condition, (train, valid, test) in conditions.items():
        for name, source in upstreams.items():
            started = time.perf_counter()
            result = run_probe("pr", source, str(train), str(valid), str(test), str(work / f"probe-{condition}-{name}"), cfg)
            results.setdefault(condition, {})[name] = {
                "per": result["test"], "valid_per": result["valid"], "epochs_run": result["epochs_run"],
                "seconds": round(time.perf_counter() - started, 1),
            }
            results_path.write_text(json.dumps(results, indent=2) + "\n")
            print(f"{condition:18s} {name:14s} PER {result['test']:.3f}", flush=True)


if __name__ == "__main__":
    main()
