"""CPU latency of one 10 s utterance: HuBERT Base and students, PyTorch eager vs ONNX Runtime fp32 / int8.

Models run interleaved (one call of each per round, so load changes hit all alike) and the
median over rounds is reported, with the MACs of each model and both ratios to HuBERT Base.
Random weights (HuBERT Base: transformers ``HubertModel`` of base size): latency does not
depend on them. Students run in ``paper`` mode; the ONNX models are written by
``armdistill.export.onnx.export_student`` into a temporary directory.

    python benchmarks/onnx_latency.py [--threads 2] [--seconds 10] [--rounds 15] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from transformers import HubertConfig, HubertModel

from armdistill.export.onnx import export_student
from armdistill.io.onnx_model import INT8_NAME, MODEL_NAME, OnnxStudent
from armdistill.models.macs import count_macs
from armdistill.models.student import Student
from _report import emit

STUDENTS = ("armhubert", "maskhubert")


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def build(workdir: Path, wav: np.ndarray, threads: int) -> tuple[dict[str, Callable[[], object]], dict[str, int]]:
    """name -> one forward pass on ``wav``; name -> MACs of that model on an input as long."""
    x, lengths = torch.from_numpy(wav), torch.tensor([wav.shape[1]])
    seconds = wav.shape[1] / 16000
    hubert = HubertModel(HubertConfig(layerdrop=0.0)).eval()
    models = {"hubert-base eager fp32": lambda: hubert(x)}
    macs = {"hubert-base eager fp32": count_macs(lambda w: hubert(w), seconds)}
    for preset in STUDENTS:
        torch.manual_seed(0)
        student = Student.from_preset(preset, reuse_mode="paper").eval()
        out = export_student(student, workdir / preset, "int8")
        fp32, int8 = OnnxStudent(out / MODEL_NAME, threads), OnnxStudent(out / INT8_NAME, threads)
        n = np.asarray([wav.shape[1]], dtype=np.int64)
        models[f"{preset} eager fp32"] = lambda s=student: s(x, lengths)
        models[f"{preset} onnx fp32"] = lambda m=fp32: m(wav, n)
        models[f"{preset} onnx int8"] = lambda m=int8: m(wav, n)
        student_macs = count_macs(student, seconds)
        macs.update({f"{preset} {kind}": student_macs for kind in ("eager fp32", "onnx fp32", "onnx int8")})
    return models, macs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    wav = 0.1 * np.random.default_rng(0).standard_normal((1, int(args.seconds * 16000)), dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        models, macs = build(Path(tmp), wav, args.threads)
    with torch.inference_mode():
        for fn in models.values():  # warm-up: allocator, kernel selection
            fn()
        load_before = os.getloadavg()
        times: dict[str, list[float]] = {name: [] for name in models}
        for _ in range(args.rounds):
            for name, fn in models.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
        load_after = os.getloadavg()
    base = "hubert-base eager fp32"
    base_s = statistics.median(times[base])
    results = {
        name: {
            "median_s": round(statistics.median(t), 4),
            "min_s": round(min(t), 4),
            "speedup_vs_hubert_base": round(base_s / statistics.median(t), 2),
            "gmacs_per_input": round(macs[name] / 1e9, 2),
            "macs_ratio_vs_hubert_base": round(macs[base] / macs[name], 2),
        }
        for name, t in times.items()
    }
    report = {
        "command": "python benchmarks/" + " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "device": f"cpu: {cpu_name()} ({os.cpu_count()} cores visible), {args.threads} threads",
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "batch": 1,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in load_after],
        "results": results,
    }
    emit(report, args.out)


if __name__ == "__main__":
    main()
