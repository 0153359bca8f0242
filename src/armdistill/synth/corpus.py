"""Plan, render (sharded across fresh processes) and write the synthetic corpora.

Speech corpus (``task="speech"``), under ``OUT``:
  ``{split}.tsv`` manifests (root ``.``, i.e. ``OUT`` itself) for train / valid / test / sid_test,
  line-aligned ``{split}.phn`` (ARPAbet, no SIL), ``.wrd``, ``.spk`` and ``{split}.ali.jsonl``;
  audio in ``OUT/audio/{split}/``; ``meta.json``.
  train: seen speakers; valid and sid_test: seen speakers, new sentences; test: held-out speakers
  and new sentences. No sentence occurs twice in the corpus.
Keyword spotting (``task="ks"``): ``ks_{train,valid,test}.tsv`` with ``.lbl`` and ``.spk``,
  audio in ``OUT/audio/ks_{split}/``, ``ks_meta.json``. valid and test speakers are held out.

``speakers="wide"`` draws from every eSpeak NG voice variant with wide prosody (``speakers.py``);
``augment=True`` passes every utterance through ``data.augment.SYNTH_AUGMENT`` with its own seed
(noise, speed, reverberation, band-limiting, gain), alignments rescaled to the new speed; the
sentences and speakers are those of the same corpus without augmentation.

The plan depends only on (task, minutes, seed, speakers, augment), so labels and lengths are
reproducible whatever the number of workers. Durations are planned from an estimate; ``meta`` records the real ones.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np

from armdistill.checks import check_choice, check_range
from armdistill.config import to_dict
from armdistill.data.augment import SYNTH_AUGMENT
from armdistill.data.manifest import label_path, write_manifest
from armdistill.errors import FileFormatError
from armdistill.frames import SAMPLE_RATE
from armdistill.synth import grammar
from armdistill.synth.espeak import require_espeak
from armdistill.synth.phones import INVENTORY
from armdistill.synth.render import UtteranceSpec, init_worker, render_chunk
from armdistill.synth.speakers import LANGUAGE, Speaker, SpeakerTable, speaker_table, split_speakers

Task = Literal["speech", "ks"]
TASKS: tuple[str, ...] = ("speech", "ks")
# Bump when the output for the same arguments changes, so cached corpora are regenerated.
GENERATOR_VERSION = 1
SPEECH_SPLITS = {"train": 0.75, "valid": 0.05, "test": 0.10, "sid_test": 0.10}
KS_SPLITS = {"ks_train": 0.80, "ks_valid": 0.10, "ks_test": 0.10}
KS_CLIP_SECONDS = 1.0
_CHUNK = 16


def meta_path(out: Path, task: Task) -> Path:
    return out / ("meta.json" if task == "speech" else "ks_meta.json")


def _estimate_seconds(words: tuple[str, ...], speaker: Speaker) -> float:
    # Fitted on the grammar's sentences at 175 words/minute; eSpeak's timing scales with the rate.
    return (0.14 + 0.29 * len(words)) * 175.0 / speaker.rate


def _unique_sentence(rng: np.random.Generator, used: set[tuple[str, ...]]) -> tuple[str, ...]:
    for _ in range(1000):
        words = tuple(grammar.sentence(rng))
        if words not in used:
            used.add(words)
            return words
    raise RuntimeError("the grammar ran out of new sentences; lower --minutes")


def _with_augment_seeds(plan: dict[str, list[UtteranceSpec]], seed: int) -> dict[str, list[UtteranceSpec]]:
    """The same plan, each utterance with its own augmentation seed (a stream of its own, so the
    sentences and speakers are those of the plan without augmentation)."""
    rng = np.random.default_rng([seed, 4])
    return {split: [replace(spec, augment_seed=int(rng.integers(2**31))) for spec in specs]
            for split, specs in plan.items()}


def plan_speech(
    minutes: float, seed: int, speakers: SpeakerTable = "demo", augment: bool = False
) -> dict[str, list[UtteranceSpec]]:
    """Utterances per split, each split filled round-robin over its speakers up to its share."""
    rng = np.random.default_rng([seed, 2])
    groups = split_speakers(seed, speakers)
    used: set[tuple[str, ...]] = set()
    plan: dict[str, list[UtteranceSpec]] = {}
    seen_in_train: list[Speaker] = []
    for split, share in SPEECH_SPLITS.items():
        pool = {"train": groups["seen"], "test": groups["test"]}.get(split, seen_in_train)
        budget, total, specs = minutes * 60.0 * share, 0.0, []
        while total < budget or not specs:
            speaker = pool[len(specs) % len(pool)]
            words = _unique_sentence(rng, used)
            uid = f"{split}-{len(specs):06d}-{speaker.id}"
            specs.append(UtteranceSpec(uid, f"audio/{split}/{uid}.flac", speaker, words))
            total += _estimate_seconds(words, speaker)
        if split == "train":
            seen_in_train = [s for s in groups["seen"] if any(spec.speaker == s for spec in specs)]
        plan[split] = specs
    return _with_augment_seeds(plan, seed) if augment else plan


def plan_ks(
    minutes: float, seed: int, speakers: SpeakerTable = "demo", augment: bool = False
) -> dict[str, list[UtteranceSpec]]:
    """Single-word clips: ten keywords and "_unknown_" in equal shares, speakers round-robin."""
    rng = np.random.default_rng([seed, 3])
    groups = split_speakers(seed, speakers)
    ks_valid = set(groups["ks_valid"])
    pools = {
        "ks_train": [s for s in groups["seen"] if s not in ks_valid],
        "ks_valid": groups["ks_valid"],
        "ks_test": groups["test"],
    }
    classes = grammar.KEYWORDS + (grammar.UNKNOWN_LABEL,)
    unknown = grammar.unknown_words()
    plan: dict[str, list[UtteranceSpec]] = {}
    for split, share in KS_SPLITS.items():
        count = max(1, int(round(minutes * 60.0 * share / KS_CLIP_SECONDS)))
        specs = []
        for i in range(count):
            label = classes[i % len(classes)]
            word = unknown[int(rng.integers(len(unknown)))] if label == grammar.UNKNOWN_LABEL else label
            speaker = pools[split][i % len(pools[split])]
            uid = f"{split}-{i:06d}-{speaker.id}"
            specs.append(
                UtteranceSpec(
                    uid, f"audio/{split}/{uid}.flac", speaker, (word,), label=label,
                    lead_seconds=float(rng.uniform(0.05, 0.3)), min_seconds=KS_CLIP_SECONDS,
                    peak=float(rng.uniform(0.3, 0.9)), snr_db=float(rng.uniform(15.0, 40.0)),
                    noise_seed=int(rng.integers(2**31)),
                )
            )
        plan[split] = specs
    return _with_augment_seeds(plan, seed) if augment else plan


def _process_context() -> multiprocessing.context.BaseContext:
    """'forkserver' where available (cheap fresh processes), else 'spawn'; never plain 'fork'."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["armdistill.synth.render", "scipy.signal", "soundfile"])
        return ctx
    return multiprocessing.get_context("spawn")


def _render_all(specs: list[UtteranceSpec], out: Path, workers: int) -> list[dict]:
    """Render fixed chunks of the plan, each in a fresh process; results keep plan order.

    eSpeak carries state from one utterance to the next inside a process (its pitch-flutter
    phase), which shifts timings and lengths; a fresh process per chunk makes the output
    depend only on the plan, not on the number of workers. An executor, unlike
    multiprocessing.Pool, fails instead of hanging when a worker cannot start.
    """
    chunks = [(specs[i : i + _CHUNK], str(out)) for i in range(0, len(specs), _CHUNK)]
    with ProcessPoolExecutor(
        max_workers=max(1, min(workers, len(chunks))),
        mp_context=_process_context(),
        initializer=init_worker,
        max_tasks_per_child=1,
    ) as pool:
        return [record for chunk in pool.map(render_chunk, chunks) for record in chunk]


def _write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines))


def _write_split(out: Path, split: str, records: list[dict], task: Task) -> None:
    manifest = out / f"{split}.tsv"
    write_manifest(manifest, ".", [(r["path"], r["num_samples"]) for r in records])
    _write_lines(label_path(manifest, "spk"), [r["speaker"] for r in records])
    if task == "ks":
        _write_lines(label_path(manifest, "lbl"), [r["label"] for r in records])
        return
    _write_lines(label_path(manifest, "phn"), [" ".join(r["phones"]) for r in records])
    _write_lines(label_path(manifest, "wrd"), [" ".join(r["words"]) for r in records])
    alignments = [
        json.dumps({"id": r["uid"], "speaker": r["speaker"], "text": " ".join(r["words"]), **r["alignment"]})
        for r in records
    ]
    _write_lines(out / f"{split}.ali.jsonl", alignments)


def _keep(
    plan: dict[str, list[UtteranceSpec]], records: list[dict], out: Path, log: Callable[[str], None] | None
) -> tuple[dict[str, list[dict]], Counter[str]]:
    """Split rendered records back by split, dropping rejections (counted by reason)."""
    it = iter(records)
    rejected: Counter[str] = Counter()
    kept: dict[str, list[dict]] = {}
    train_speakers: set[str] = set()
    for split, split_specs in plan.items():
        kept[split] = []
        for _ in split_specs:
            record = next(it)
            if "rejected" not in record and split in ("valid", "sid_test") and record["speaker"] not in train_speakers:
                # All of this speaker's train utterances were rejected; dropping it keeps "seen speakers" true.
                (out / record["path"]).unlink()
                record = {"rejected": "speaker_unseen_in_train"}
            if "rejected" in record:
                rejected[record["rejected"]] += 1
                if log is not None and "reason" in record:
                    log(f"rejected {record['uid']}: {record['reason']}")
                continue
            kept[split].append(record)
        if split == "train":
            train_speakers = {r["speaker"] for r in kept[split]}
    return kept, rejected


def _args(task: Task, minutes: float, seed: int, speakers: SpeakerTable, augment: bool) -> dict:
    args = {"task": task, "minutes": float(minutes), "seed": int(seed), "version": GENERATOR_VERSION}
    # Recorded only when not the default, so corpora generated before these options stay cached.
    if speakers != "demo":
        args["speakers"] = speakers
    if augment:
        args["augment"] = to_dict(SYNTH_AUGMENT)
    return args


def load_meta(out: str | Path, task: Task = "speech") -> dict | None:
    """The corpus's metadata, or None when it has not been (completely) generated."""
    path = meta_path(Path(out), task)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise FileFormatError(f"{path}: not valid JSON ({err}); delete it to regenerate the corpus") from None


def generate(
    out: str | Path,
    minutes: float,
    seed: int = 0,
    workers: int = 2,
    task: Task = "speech",
    log: Callable[[str], None] | None = None,
    speakers: SpeakerTable = "demo",
    augment: bool = False,
) -> dict:
    """Generate the corpus for ``task`` under ``out`` unless it exists with the same arguments.

    Returns the metadata (also written to ``meta.json`` / ``ks_meta.json``, last, so an
    interrupted run is never mistaken for a finished one).
    """
    check_choice("task", task, TASKS)
    check_range("minutes", minutes, gt=0)
    check_range("workers", workers, ge=1)
    out = Path(out)
    args = _args(task, minutes, seed, speakers, augment)
    meta = load_meta(out, task)
    if meta is not None and meta.get("args") == args:
        return meta
    require_espeak()
    meta_path(out, task).unlink(missing_ok=True)

    start = time.perf_counter()
    plan = (plan_speech if task == "speech" else plan_ks)(minutes, seed, speakers, augment)
    for split in plan:
        shutil.rmtree(out / "audio" / split, ignore_errors=True)
    specs = [spec for split_specs in plan.values() for spec in split_specs]
    kept, rejected = _keep(plan, _render_all(specs, out, workers), out, log)
    out.mkdir(parents=True, exist_ok=True)
    for split, split_records in kept.items():
        _write_split(out, split, split_records, task)

    meta = {
        "args": args,
        "task": task,
        "seed": int(seed),
        "minutes": float(minutes),
        "sample_rate": SAMPLE_RATE,
        "language": LANGUAGE,
        "phone_inventory": list(INVENTORY) if task == "speech" else None,
        "labels": list(grammar.KEYWORDS) + [grammar.UNKNOWN_LABEL] if task == "ks" else None,
        "speakers": {split: sorted({r["speaker"] for r in rs}) for split, rs in kept.items()},
        "speaker_table": {s.id: s.to_dict() for s in speaker_table(speakers)},
        "counts": {
            split: {"utterances": len(rs), "seconds": round(sum(r["num_samples"] for r in rs) / SAMPLE_RATE, 3)}
            for split, rs in kept.items()
        },
        "rejected": dict(sorted(rejected.items())),
        "workers": int(workers),
        "wall_seconds": round(time.perf_counter() - start, 3),
    }
    tmp = meta_path(out, task).with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(tmp, meta_path(out, task))
    return meta
