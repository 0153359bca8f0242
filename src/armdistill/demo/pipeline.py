"""The end-to-end demo: synthesise (cached) -> distil an ARM student -> PR probes -> report.

Output directory layout: ``distill/`` (the training run, see distill/train.py), ``probe_data/``
(the probe's train subset manifest), ``probes/<upstream>/`` (``metrics.json``,
``layer_weights.png``), ``report.md``, ``report.json`` and the figures from demo/plots.py.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import torch

from armdistill.config import ConfigError
from armdistill.data.audio import load_audio
from armdistill.data.manifest import read_manifest
from armdistill.demo import plots, report
from armdistill.demo.config import DemoConfig
from armdistill.demo.stages import (
    UPSTREAMS, Timer, distill, probe, probe_manifests, probe_settings, synthesise, teacher_source,
)
from armdistill.distill.config import resolve_proj_dim
from armdistill.eval.upstream import BaselineUpstream, StudentUpstream, TeacherUpstream, Upstream
from armdistill.models.student import Student
from armdistill.teachers import Teacher
from armdistill.threads import torch_threads


def untrained_student(cfg: DemoConfig, teacher_dim: int) -> Student:
    """The distilled student's configuration (heads as wide as the teacher), randomly initialised
    from the recipe's seed."""
    with torch.random.fork_rng():
        torch.manual_seed(cfg.distill.seed)
        return Student(resolve_proj_dim(cfg.distill, teacher_dim).student_model)


def upstreams(cfg: DemoConfig, student_dir: Path) -> dict[str, Upstream]:
    features = cfg.probe.settings.student_features
    teacher = Teacher.from_pretrained(teacher_source(cfg))
    return {
        "teacher": TeacherUpstream(teacher, name="teacher"),
        "student": StudentUpstream(Student.from_pretrained(student_dir), features, name="student"),
        "student_untrained": StudentUpstream(untrained_student(cfg, teacher.dim), features, name="student (untrained)"),
        "mfcc": BaselineUpstream("mfcc"),
        "mfcc_context": BaselineUpstream("mfcc-context"),
    }


def probe_all(cfg: DemoConfig, models: dict[str, Upstream], manifests: dict[str, Path], out: Path) -> dict[str, dict]:
    """One PR probe per upstream, the same settings for all."""
    settings = probe_settings(cfg)
    return {name: probe(name, upstream, manifests, out / "probes" / name, settings) for name, upstream in models.items()}


def attention_wav(cfg: DemoConfig, corpus: Path) -> tuple[torch.Tensor, str]:
    """The test utterance whose maps are drawn: ``([samples], id)``."""
    m = read_manifest(corpus / "test.tsv")
    if cfg.attention_utterance >= len(m):
        raise ConfigError(f"attention_utterance: {cfg.attention_utterance} is past the test split's {len(m)} utterances")
    path = m.audio_path(cfg.attention_utterance)
    return torch.from_numpy(load_audio(path)), path.stem


def run_demo(cfg: DemoConfig, out: str | Path) -> dict[str, Any]:
    """Run every stage and write the report; returns the report dict (report.json)."""
    with torch_threads(cfg.threads):
        return _run_stages(cfg, Path(out))


def _run_stages(cfg: DemoConfig, out: Path) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    timer = Timer()
    load_before = os.getloadavg()
    with timer.stage("synthesise", f"synthetic corpus ({cfg.corpus.minutes:g} min, seed {cfg.corpus.seed})"):
        corpus = synthesise(cfg)
    manifests = probe_manifests(cfg, corpus, out)
    with timer.stage("distill", f"{cfg.distill.loss.objective} distillation ({cfg.distill.trainer.max_steps} steps)"):
        student_dir = distill(cfg, corpus, out)
    with timer.stage("probe", "phone-recognition probes: " + ", ".join(UPSTREAMS)):
        models = upstreams(cfg, student_dir)
        results = probe_all(cfg, models, manifests, out)
    with timer.stage("plots", "figures"):
        wav, utt = attention_wav(cfg, corpus)
        figures = plots.write_all(out, results, models["teacher"].teacher, models["student"].student, wav, utt)
    data = report.build(cfg, out, results, models, student_dir, manifests, figures, timer, load_before, os.getloadavg())
    report.write(out, data)
    print(f"[{timer.elapsed():6.1f} s] report: {out / 'report.md'}", file=sys.stderr)
    return data

