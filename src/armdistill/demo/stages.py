"""The stages the demo and its ablation share: corpus, probe manifests, distillation, probes.

``demo/pipeline.py`` runs them once and reports (``demo/report.py``); ``demo/ablation.py`` runs
distillation and probes per variant and seed.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

import armdistill
from armdistill.data.manifest import read_manifest, write_subset
from armdistill.demo.config import DemoConfig
from armdistill.distill.checkpoints import CHECKPOINT_DIR
from armdistill.distill.train import run_distillation
from armdistill.eval.probe import ProbeConfig, default_cache_dir, run_probe
from armdistill.eval.upstream import Upstream
from armdistill.frames import SAMPLE_RATE
from armdistill.models.student import Student
from armdistill.synth import generate, load_meta, plan_speech
from armdistill.synth.corpus import GENERATOR_VERSION

# report.json "per" keys, in table order
UPSTREAMS: tuple[str, ...] = ("teacher", "student", "student_untrained", "mfcc", "mfcc_context")
LABEL_EXTS: tuple[str, ...] = ("phn", "wrd", "spk")


@dataclass
class Timer:
    """Wall seconds per stage, in the order the stages ran."""

    start: float = field(default_factory=time.perf_counter)
    stages: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str, what: str) -> Iterator[None]:
        print(f"[{self.elapsed():6.1f} s] {what}", file=sys.stderr, flush=True)
        began = time.perf_counter()
        yield
        self.stages[name] = round(time.perf_counter() - began, 2)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


def cache_root(cfg: DemoConfig) -> Path:
    return Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()


def corpus_dir(cfg: DemoConfig) -> Path:
    c = cfg.corpus
    return Path(c.dir) if c.dir else cache_root(cfg) / "synth" / f"speech-{c.minutes:g}min-seed{c.seed}"


def _count_audio(out: Path) -> int:
    audio = out / "audio"
    return sum(1 for split in audio.iterdir() if split.is_dir() for _ in split.iterdir()) if audio.is_dir() else 0


def synthesise(cfg: DemoConfig) -> Path:
    """The speech corpus of ``cfg.corpus``; a no-op when it already exists with those arguments.

    synth.generate has no progress hook, so a bar follows the audio files as they appear.
    """
    out = corpus_dir(cfg)
    c = cfg.corpus
    meta = load_meta(out)
    wanted = {"task": "speech", "minutes": float(c.minutes), "seed": int(c.seed), "version": GENERATOR_VERSION}
    if meta is not None and meta.get("args") == wanted:
        print(f"corpus: cached at {out}", file=sys.stderr)
        return out
    total = sum(len(specs) for specs in plan_speech(c.minutes, c.seed).values())
    done = threading.Event()

    def follow(bar: tqdm) -> None:
        while not done.wait(0.5):
            count = min(total, _count_audio(out))
            if count != bar.n:
                bar.update(count - bar.n)

    with tqdm(total=total, desc="synthesise", unit="utt") as bar:
        watcher = threading.Thread(target=follow, args=(bar,), daemon=True)
        watcher.start()
        try:
            generate(out, c.minutes, seed=c.seed, workers=c.workers)
        finally:
            done.set()
            watcher.join()
        bar.update(total - bar.n)
    return out


def subset_manifest(manifest: Path, minutes: float | None, out: Path) -> Path:
    """The first utterances of ``manifest`` up to ``minutes`` of audio, with their label files."""
    if minutes is None:
        return manifest
    m = read_manifest(manifest)
    budget, total, count = minutes * 60.0 * SAMPLE_RATE, 0, 0
    while count < len(m) and (total < budget or count == 0):
        total += m.num_samples[count]
        count += 1
    return write_subset(manifest, range(count), out, labels=LABEL_EXTS)


def probe_manifests(cfg: DemoConfig, corpus: Path, out: Path) -> dict[str, Path]:
    """The probe's train / valid / test manifests: a ``probe.train_minutes`` subset of the corpus's
    train split (written under ``out/probe_data/``), its valid and test splits."""
    return {
        "train": subset_manifest(corpus / "train.tsv", cfg.probe.train_minutes, out / "probe_data" / "train.tsv"),
        "valid": corpus / "valid.tsv",
        "test": corpus / "test.tsv",
    }


def teacher_source(cfg: DemoConfig) -> str:
    return cfg.teacher or str(armdistill.DEFAULT_TEACHER)


def distill(cfg: DemoConfig, corpus: Path, out: Path, resume_unfinished: bool = False) -> Path:
    """Distillation with the demo recipe into ``out/distill``; returns the exported student.

    A previous run there is replaced, or, with ``resume_unfinished``, continued from its newest
    checkpoint when it has one.
    """
    d = cfg.distill
    recipe = replace(
        d,
        output_dir=str(out / "distill"),
        teacher=replace(d.teacher, path=d.teacher.path or teacher_source(cfg)),
        data=replace(d.data, train=d.data.train or str(corpus / "train.tsv"),
                     valid=str(corpus / "valid.tsv") if d.data.valid == "" else d.data.valid),
    )
    resume = resume_unfinished and any((out / "distill" / CHECKPOINT_DIR).glob("*.ckpt"))
    return run_distillation(recipe, resume="last" if resume else None, overwrite=not resume)


def probe(name: str, upstream: Upstream | Student | str, manifests: dict[str, Path], out: Path,
          settings: ProbeConfig) -> dict[str, Any]:
    """One PR probe (eval/probe.py) whose epochs advance a progress bar."""
    with tqdm(total=settings.resolved("pr").epochs, desc=f"probe {name}", unit="epoch") as bar:
        def log(line: str) -> None:
            if line.startswith("epoch "):
                bar.update(1)
                bar.set_postfix_str(line.split(": ", 1)[1])

        return run_probe("pr", upstream, manifests["train"], manifests["valid"], manifests["test"], out, settings, log)


def probe_settings(cfg: DemoConfig) -> ProbeConfig:
    settings = cfg.probe.settings
    if settings.cache_dir is None:
        settings = replace(settings, cache_dir=str(cache_root(cfg) / "features"))
    return settings
