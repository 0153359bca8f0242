"""Throughput of students (each reuse mode) and a HuBERT Base-shaped teacher.

Prints and saves JSON: audio seconds processed per wall second for inference and for a training
step (forward + backward through the heads). Random weights: speed does not depend on them.

    python benchmarks/student_throughput.py [--device cuda] [--batch 8] [--seconds 10] [--out FILE]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from transformers import HubertConfig, HubertModel

from armdistill.models.student import Student

from _report import device_name, emit


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(fn, device: torch.device, repeats: int) -> float:
    fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    batch = args.batch or (8 if gpu else 1)
    seconds = args.seconds or (10.0 if gpu else 4.0)
    repeats = args.repeats or (10 if gpu else 2)
    dtype = torch.bfloat16 if gpu else torch.float32
    wav = torch.randn(batch, int(seconds * 16000), device=device)
    audio = batch * seconds
    autocast = torch.autocast(device.type, dtype=dtype, enabled=gpu)

    results = {}
    for preset, mode in [("armhubert", "paper"), ("armhubert", "explicit"), ("armhubert", "release"), ("maskhubert", "paper")]:
        model = Student.from_preset(preset, reuse_mode=mode).to(device)

        def infer():
            with torch.no_grad(), autocast:
                model.eval()(wav)

        def train_step():
            model.train()
            with autocast:
                out = model(wav)
                loss = sum(p.float().pow(2).mean() for p in out.projections)
            loss.backward()
            model.zero_grad(set_to_none=True)

        results[f"{preset}/{mode}"] = {
            "inference_audio_s_per_s": round(audio / _time(infer, device, repeats), 1),
            "train_step_audio_s_per_s": round(audio / _time(train_step, device, repeats), 1),
        }
        print(preset, mode, results[f"{preset}/{mode}"], flush=True)
    teacher = HubertModel(HubertConfig(layerdrop=0.0, attn_implementation="sdpa")).to(device).eval()

    def teacher_infer():
        with torch.no_grad(), autocast:
            teacher(wav, output_hidden_states=True)

    results["hubert-base/teacher"] = {"inference_audio_s_per_s": round(audio / _time(teacher_infer, device, repeats), 1)}
    print("teacher", results["hubert-base/teacher"], flush=True)
    report = {
        "device": device_name(device),
        "torch": torch.__version__,
        "batch": batch,
        "seconds_per_utterance": seconds,
        "dtype": str(dtype),
        "results": results,
    }
    emit(report, args.out)


if __name__ == "__main__":
    main()
