"""Probe feature extraction: one utterance at a time vs length-sorted padded batches, per thread count.

Seconds per utterance of ``eval.cache.extract_features`` for the shipped teacher and a
random ``tiny-arm`` student over the first ``--utterances`` of a manifest, for each batch
budget and torch thread count, alternating and keeping the best of ``--repeats`` (a shared
machine's load moves single measurements), plus the largest difference between batched and
one-at-a-time features.

    python benchmarks/probe_features.py --manifest DIR/test.tsv [--threads 1 2] [--out FILE]

(``armdistill synth DIR --minutes 30 --seed 0`` writes the demo's corpus.)
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import armdistill
from armdistill.data.audio import load_audio
from armdistill.data.manifest import read_manifest
from armdistill.eval.cache import extract_features
from armdistill.eval.upstream import StudentUpstream, TeacherUpstream, Upstream
from armdistill.models.student import Student
from armdistill.teachers import Teacher
from armdistill.threads import torch_threads

from _report import device_name, emit, load_average

ALONE = 1e-3  # a budget below any utterance: every batch holds one


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--utterances", type=int, default=48)
    parser.add_argument("--budgets", type=float, nargs="+", default=[8.0, 16.0, 60.0], help="padded seconds per batch")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    manifest = read_manifest(args.manifest)
    wavs = [torch.from_numpy(load_audio(manifest.audio_path(i))) for i in range(min(args.utterances, len(manifest)))]
    torch.manual_seed(0)
    upstreams: dict[str, Upstream] = {
        "shipped-teacher": TeacherUpstream(Teacher.from_pretrained(armdistill.DEFAULT_TEACHER)),
        "tiny-arm": StudentUpstream(Student.from_preset("tiny-arm")),
    }
    load_before = load_average()
    results: dict[str, Any] = {}
    for name, upstream in upstreams.items():
        alone = extract_features(upstream, wavs, ALONE)
        batched = extract_features(upstream, wavs, max(args.budgets))
        results[f"{name}/max_abs_diff"] = max((a - b).abs().max().item() for a, b in zip(alone, batched))
        times: dict[str, list[float]] = {}
        for _ in range(args.repeats):
            for threads in args.threads:
                for budget in (ALONE, *args.budgets):
                    with torch_threads(threads):
                        start = time.perf_counter()
                        extract_features(upstream, wavs, budget)
                    key = f"{name}/threads={threads}/{'alone' if budget == ALONE else f'batch {budget:g} s'}"
                    times.setdefault(key, []).append((time.perf_counter() - start) / len(wavs))
        for key, values in times.items():
            results[key] = {"best_seconds_per_utterance": round(min(values), 4), "all": [round(v, 4) for v in values]}
            print(key, results[key], flush=True)
    report = {
        "device": device_name(torch.device("cpu")),
        "torch": torch.__version__,
        "load_average": {"before": load_before, "after": load_average()},
        "manifest": str(args.manifest), "utterances": len(wavs),
        "mean_seconds": round(sum(len(w) for w in wavs) / len(wavs) / 16000, 3),
        "results": results,
    }
    emit(report, args.out)
    return report


if __name__ == "__main__":
    main()
