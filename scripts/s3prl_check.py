#!/usr/bin/env python3
"""The s3prl recipe's final check: s3prl's own downstream runner trains and evaluates through
``armdistill superb`` on data laid out, as s3prl's recipes expect it, from the synthetic corpus.

Run it with the environment ``scripts/s3prl_venv.sh`` builds, on a corpus made beforehand:

    armdistill synth CORPUS --minutes 2 --seed 0              # ASR and PR
    armdistill synth CORPUS --task ks --minutes 1 --seed 0    # IC (optional, same folder)
    VENV/bin/python scripts/s3prl_check.py --s3prl-root S3PRL_SRC/s3prl --corpus CORPUS --out WORK

Under ``WORK/data`` it builds from the corpus (train / valid / test splits):

- ``LibriSpeech/{train-clean-100,dev-clean,test-clean}/SPK/CHAP/SPK-CHAP-NNNN.flac`` with one
  ``SPK-CHAP.trans.txt`` (upper-case words) per chapter, and ``SPEAKERS.TXT``;
- ``len_for_bucket/*.csv`` with s3prl's ``preprocess/generate_len_for_bucket.py`` and
  ``char.dict`` (the transcripts' letters, fairseq's ``SYMBOL COUNT`` lines) for ASR;
- ``superb_pr/*.csv`` with s3prl's ``preprocess/preprocess_superb_pr.py``, ``lexicon.txt`` (each
  word's phones from the corpus alignments, read back with armdistill's lexicon reader) and
  ``phones.txt`` (the 39 ARPAbet phones that reader yields) for PR;
- ``fluent_speech_commands/{wavs/speakers/SPK/*.wav,data/*_data.csv}`` from the keyword set for
  IC: the intent's action is the keyword, its object and location ``none``.

Then, per task, ``armdistill superb ... -- -m train`` for ``--steps`` steps (the runner evaluates
the dev split and writes ``states-STEPS.ckpt`` at the last step) and ``-m evaluate -e
states-STEPS.ckpt`` on the test split. It prints the training losses from the runner's
TensorBoard log and the metric lines, writes ``WORK/s3prl_check.json``, and exits non-zero
when a run fails or leaves no checkpoint or metric.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import soundfile as sf
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from armdistill.data.lexicon import read_lexicon
from armdistill.data.manifest import read_labels, read_manifest
from armdistill.data.phones import ARPABET
from armdistill.models.student import Student
from armdistill.synth.corpus import load_meta
from armdistill.synth.phones import SILENCE

# Corpus split -> LibriSpeech split and chapter number.
LIBRI_SPLITS = {"train": ("train-clean-100", 1), "valid": ("dev-clean", 2), "test": ("test-clean", 3)}
FLUENT_SPLITS = {"ks_train": "train", "ks_valid": "valid", "ks_test": "test"}
# generate_len_for_bucket.py asks for the indices of its LibriSpeech split list on stdin.
BUCKET_SPLIT_INDICES = "0 3 5"  # train-clean-100, dev-clean, test-clean
TASKS = ("asr", "pr", "ic")
METRIC_LINE = re.compile(r"^(dev|dev-clean|test|test-clean) (wer|uer|per|acc|loss): (\S+)$")


def _speaker_ids(speakers: list[str]) -> dict[str, int]:
    """LibriSpeech speaker folders are integers."""
    return {spk: 1001 + i for i, spk in enumerate(sorted(set(speakers)))}


def build_librispeech(corpus: Path, root: Path) -> list[str]:
    """The speech corpus as a LibriSpeech tree under ``root``; returns every transcript."""
    splits = {s: (read_manifest(corpus / f"{s}.tsv"), read_labels(corpus / f"{s}.tsv", "wrd"),
                  read_labels(corpus / f"{s}.tsv", "spk")) for s in LIBRI_SPLITS}
    ids = _speaker_ids([spk for _, _, spks in splits.values() for spk in spks])
    transcripts, speaker_rows = [], {}
    for split, (manifest, words, speakers) in splits.items():
        libri_split, chapter = LIBRI_SPLITS[split]
        lines: dict[Path, list[str]] = {}
        for i, (text, spk) in enumerate(zip(words, speakers)):
            folder = root / libri_split / str(ids[spk]) / str(chapter)
            folder.mkdir(parents=True, exist_ok=True)
            utt = f"{ids[spk]}-{chapter}-{len(lines.get(folder, [])):04d}"
            audio, rate = sf.read(manifest.audio_path(i), dtype="float32")
            sf.write(folder / f"{utt}.flac", audio, rate, format="FLAC")
            lines.setdefault(folder, []).append(f"{utt} {text.upper()}")
            transcripts.append(text.upper())
            speaker_rows.setdefault(ids[spk], (libri_split, spk))
        for folder, rows in lines.items():
            (folder / f"{folder.parent.name}-{folder.name}.trans.txt").write_text("\n".join(rows) + "\n")
    # s3prl's LibriSpeech reader takes each speaker's sex from here; the synthetic voices have none
    # recorded, so the column holds a placeholder.
    table = [";ID  |SEX| SUBSET           |MINUTES| NAME"]
    table += [f"{sid:<5}| F | {split:<17}| 1.00 | {spk}" for sid, (split, spk) in sorted(speaker_rows.items())]
    (root / "SPEAKERS.TXT").write_text("\n".join(table) + "\n")
    return transcripts


def write_char_dict(transcripts: list[str], path: Path) -> None:
    """fairseq's ``SYMBOL COUNT`` lines, most frequent first; ``|`` ends each word (s3prl's ASR)."""
    counts = Counter(ch for text in transcripts for ch in text.replace(" ", "|") + "|")
    path.write_text("".join(f"{ch} {n}\n" for ch, n in counts.most_common()))


def write_lexicon(corpus: Path, path: Path) -> int:
    """``WORD PH1 PH2 ...`` from the alignments (first pronunciation seen wins); read back with
    armdistill's lexicon reader, which also checks every phone is one of the 39."""
    lexicon: dict[str, list[str]] = {}
    for split in LIBRI_SPLITS:
        for line in (corpus / f"{split}.ali.jsonl").read_text().splitlines():
            ali = json.loads(line)
            for word in ali["words"]:
                phones = [p["phone"] for p in ali["phones"] if p["phone"] != SILENCE
                          and p["start"] >= word["start"] - 1e-6 and p["end"] <= word["end"] + 1e-6]
                lexicon.setdefault(word["word"].upper(), phones)
    path.write_text("".join(f"{w}\t{' '.join(p)}\n" for w, p in sorted(lexicon.items())))
    return len(read_lexicon(path))


def build_fluent(corpus: Path, root: Path) -> None:
    """The keyword set in Fluent Speech Commands' layout: an intent is (action, object, location)."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    for split, name in FLUENT_SPLITS.items():
        manifest = read_manifest(corpus / f"{split}.tsv")
        labels, speakers = read_labels(corpus / f"{split}.tsv", "lbl"), read_labels(corpus / f"{split}.tsv", "spk")
        with open(root / "data" / f"{name}_data.csv", "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["", "path", "speakerId", "transcription", "action", "object", "location"])
            for i, (label, spk) in enumerate(zip(labels, speakers)):
                rel = Path("wavs") / "speakers" / spk / f"{Path(manifest.paths[i]).stem}.wav"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                audio, rate = sf.read(manifest.audio_path(i), dtype="float32")
                sf.write(root / rel, audio, rate, subtype="PCM_16")
                writer.writerow([i, str(rel), spk, label, label, "none", "none"])


def run_logged(cmd: list[str], log: Path, cwd: Path | None = None, stdin: str | None = None) -> list[str]:
    """Run ``cmd``, echo and keep its output (tqdm's redraws dropped); raise on failure."""
    print("$ " + " ".join(cmd), flush=True)
    start = time.time()
    proc = subprocess.run(cmd, cwd=cwd, input=stdin, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", proc.stdout)  # tqdm's cursor moves
    lines = [part.rstrip() for part in re.split(r"[\r\n]", text) if part.strip()]
    log.write_text(proc.stdout)
    for line in lines:
        if not re.search(r"\d+it \[|\d+%\|", line):
            print("  " + line)
    print(f"  ({time.time() - start:.0f} s, exit {proc.returncode}; full output in {log})", flush=True)
    if proc.returncode != 0:
        raise SystemExit(f"s3prl check: {cmd[0]} {' '.join(cmd[1:3])} failed (exit {proc.returncode}), see {log}")
    return lines


def train_losses(expdir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every ``*/train-*loss`` scalar the runner logged to TensorBoard."""
    events = EventAccumulator(str(expdir))
    events.Reload()
    tags = [t for t in events.Tags()["scalars"] if "/train-" in t and t.endswith("loss")]
    return {t: [(e.step, round(e.value, 4)) for e in events.Scalars(t)] for t in tags}


def task_overrides(task: str, data: Path, steps: int, batch: int) -> tuple[list[str], str]:
    """The runner's ``-o`` settings for ``task`` on the built data, and its test split."""
    runner = [f"config.runner.total_steps={steps}", f"config.runner.log_step={max(1, steps // 4)}",
              f"config.runner.eval_step={steps}", f"config.runner.save_step={steps}"]
    if task == "asr":
        expert = "config.downstream_expert.datarc"
        return runner + [f"{expert}.libri_root='{data / 'LibriSpeech'}'", f"{expert}.bucket_file='{data / 'len_for_bucket'}'",
                         f"{expert}.dict_path='{data / 'char.dict'}'", f"{expert}.num_workers=0",
                         f"{expert}.batch_size={batch}", f"{expert}.train_batch_size={batch}"], "test-clean"
    if task == "pr":
        corpus, text = "config.downstream_expert.corpus", "config.downstream_expert.text"
        return runner + [f"{corpus}.csv_dir='{data / 'superb_pr'}'", f"{corpus}.lexicon=['{data / 'lexicon.txt'}']",
                         f"{text}.vocab_file='{data / 'phones.txt'}'", f"{corpus}.num_workers=0",
                         f"{corpus}.batch_size={batch}"], "test"
    expert = "config.downstream_expert.datarc"
    return runner + [f"{expert}.file_path='{data / 'fluent_speech_commands'}'", f"{expert}.num_workers=0",
                     f"{expert}.train_batch_size={batch}", f"{expert}.eval_batch_size={batch}"], "test"


def prepare(args: argparse.Namespace, data: Path, logs: Path, tasks: list[str]) -> None:
    python, root = sys.executable, args.s3prl_root
    if {"asr", "pr"} & set(tasks):
        transcripts = build_librispeech(args.corpus, data / "LibriSpeech")
        print(f"LibriSpeech tree: {len(transcripts)} utterances under {data / 'LibriSpeech'}")
    if "asr" in tasks:
        run_logged([python, "preprocess/generate_len_for_bucket.py", "-i", str(data / "LibriSpeech"), "-o", str(data),
                    "-a", ".flac", "--n_jobs", "1"], logs / "generate_len_for_bucket.log", cwd=root,
                   stdin=BUCKET_SPLIT_INDICES + "\n")
        write_char_dict(transcripts, data / "char.dict")
    if "pr" in tasks:
        run_logged([python, "preprocess/preprocess_superb_pr.py", str(data / "LibriSpeech"), "--csv_dir",
                    str(data / "superb_pr")], logs / "preprocess_superb_pr.log", cwd=root)
        words = write_lexicon(args.corpus, data / "lexicon.txt")
        (data / "phones.txt").write_text("\n".join(ARPABET) + "\n")
        print(f"PR lexicon: {words} words; phone set: {len(ARPABET)} phones")
    if "ic" in tasks:
        build_fluent(args.corpus, data / "fluent_speech_commands")
        print(f"Fluent Speech Commands layout under {data / 'fluent_speech_commands'}")


def check_task(task: str, args: argparse.Namespace, upstream: str, data: Path, logs: Path) -> dict:
    overrides, test_split = task_overrides(task, data, args.steps, args.batch_size)
    expdir = args.out / "exp" / task
    superb = [str(Path(sys.executable).with_name("armdistill")), "superb", "--task", task, "--upstream", upstream,
              "--s3prl-root", str(args.s3prl_root), "--"]
    train = run_logged(superb + ["-m", "train", "-p", str(expdir), "--device", args.device, "-o", ",,".join(overrides)],
                       logs / f"{task}-train.log")
    ckpt = expdir / f"states-{args.steps}.ckpt"
    if not ckpt.is_file():
        raise SystemExit(f"s3prl check: {task}: the runner wrote no {ckpt.name} in {expdir}")
    evaluate = run_logged(superb + ["-m", "evaluate", "-t", test_split, "-e", str(ckpt), "--device", args.device],
                          logs / f"{task}-evaluate.log")
    metrics = {f"{m[1]} {m[2]}": float(m[3]) for m in map(METRIC_LINE.match, train + evaluate) if m}
    if not any(key.startswith(test_split + " ") and "loss" not in key for key in metrics):
        raise SystemExit(f"s3prl check: {task}: no {test_split} metric line in the evaluation output")
    losses = train_losses(expdir)
    if not losses:
        raise SystemExit(f"s3prl check: {task}: no training loss in the runner's TensorBoard log in {expdir}")
    for tag, points in losses.items():
        print(f"{task} {tag}: " + ", ".join(f"step {s} {v}" for s, v in points))
    print(f"{task} metrics: {metrics}")
    return {"checkpoint": str(ckpt), "train_losses": losses, "metrics": metrics}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--s3prl-root", type=Path, required=True, help="the s3prl/ folder of the s3prl 0.4.18 source tree")
    parser.add_argument("--corpus", type=Path, required=True, help="a folder written by 'armdistill synth'")
    parser.add_argument("--out", type=Path, required=True, help="work folder (data, experiments, logs)")
    parser.add_argument("--upstream", default=None, help="student directory or preset, or teacher source "
                        "(default: a tiny-arm student with seed 0, saved under --out)")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=None,
                        help="default: asr pr, and ic when the corpus holds the keyword set")
    parser.add_argument("--steps", type=int, default=20, help="training steps per task")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    args.s3prl_root, args.corpus, args.out = args.s3prl_root.resolve(), args.corpus.resolve(), args.out.resolve()
    if load_meta(args.corpus) is None:
        parser.error(f"--corpus {args.corpus}: no speech corpus (run 'armdistill synth {args.corpus} --minutes 2 --seed 0')")
    has_ks = load_meta(args.corpus, "ks") is not None
    tasks = args.tasks or ["asr", "pr"] + (["ic"] if has_ks else [])
    if "ic" in tasks and not has_ks:
        parser.error(f"--tasks ic: {args.corpus} has no keyword set (run 'armdistill synth {args.corpus} --task ks ...')")
    if args.out.exists() and any(args.out.iterdir()):
        parser.error(f"--out {args.out}: not empty; give a new folder")
    data, logs = args.out / "data", args.out / "logs"
    logs.mkdir(parents=True)
    upstream = args.upstream
    if upstream is None:
        torch.manual_seed(0)
        upstream = str(args.out / "student")
        Student.from_preset("tiny-arm").save_pretrained(upstream)
    prepare(args, data, logs, tasks)
    results = {"s3prl_root": str(args.s3prl_root), "corpus": str(args.corpus), "upstream": upstream,
               "steps": args.steps, "device": args.device, "tasks": {}}
    for task in tasks:
        results["tasks"][task] = check_task(task, args, upstream, data, logs)
    (args.out / "s3prl_check.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"s3prl check passed: {', '.join(tasks)} trained {args.steps} steps and evaluated; {args.out / 's3prl_check.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
