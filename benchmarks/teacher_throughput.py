"""Teacher inference with SDPA vs eager attention (``teacher.sdpa``), HuBERT and WavLM.

Audio seconds per wall second of ``Teacher.masked_and_unmasked`` (the teacher's share of a
masking-distillation step) on random weights and random audio, for each kind and kernel, from
the best of ``--repeats`` alternating calls.
WavLM's eager kernel is transformers' own; its SDPA kernel is ``teachers/attention.py``.

    python benchmarks/teacher_throughput.py [--device cuda] [--size base|small] [--out FILE]

Defaults: CUDA: Base-shaped (768-d, 12 layers), batch 8 x 12 s, bf16 autocast; CPU: small
(256-d, 4 layers, 64-channel CNN), batch 2 x 8 s, fp32.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

from armdistill.teachers import Teacher, make_base_model, make_random_model

from _report import device_name, emit, load_average

SMALL = dict(conv_dim=[64] * 7, hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024,
             num_conv_pos_embeddings=32, num_conv_pos_embedding_groups=8)


def make_model(kind: str, size: str) -> PreTrainedModel:
    return make_random_model(kind, seed=0, **SMALL) if size == "small" else make_base_model(kind)


def time_call(teacher: Teacher, wav: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor, dtype: torch.dtype | None) -> float:
    """Seconds of one ``masked_and_unmasked`` call."""
    autocast = torch.autocast(wav.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)
    if wav.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    with autocast:
        teacher.masked_and_unmasked(wav, lengths, mask)
    if wav.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", choices=["base", "small"], default=None)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--kinds", nargs="+", default=["hubert", "wavlm"])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    size = args.size or ("base" if gpu else "small")
    batch, seconds = args.batch or (8 if gpu else 2), args.seconds or (12.0 if gpu else 8.0)
    repeats = args.repeats or (10 if gpu else 5)
    dtype = torch.bfloat16 if gpu else None
    samples = int(seconds * 16000)
    wav = torch.randn(batch, samples, generator=torch.Generator().manual_seed(0)).to(device)
    # one utterance in four shorter, so that the padding mask is in play as in training
    lengths = torch.tensor([samples if i % 4 else samples * 3 // 4 for i in range(batch)], device=device)
    load_before = load_average()
    results: dict[str, Any] = {}
    for kind in args.kinds:
        model = make_model(kind, size).to(device)
        mask = torch.zeros(batch, int(Teacher(model).frame_lengths(lengths).max()), dtype=torch.bool, device=device)
        mask[:, ::3] = True
        times: dict[bool, list[float]] = {False: [], True: []}
        # kernels alternate, one warm-up call each, and the best call counts: robust to a shared machine
        for _ in range(repeats + 1):
            for sdpa in (False, True):
                times[sdpa].append(time_call(Teacher(model, sdpa=sdpa), wav, lengths, mask, dtype))
        for sdpa in (False, True):
            best = min(times[sdpa][1:])
            name = f"{kind}/{'sdpa' if sdpa else 'eager'}"
            results[name] = {"audio_s_per_s": round(float(lengths.sum()) / 16000 / best, 2), "best_seconds_per_call": round(best, 4),
                             "median_seconds_per_call": round(statistics.median(times[sdpa][1:]), 4)}
            print(name, results[name], flush=True)
        results[f"{kind}/speedup"] = round(results[f"{kind}/sdpa"]["audio_s_per_s"] / results[f"{kind}/eager"]["audio_s_per_s"], 3)
    report = {
        "device": device_name(device),
        "torch": torch.__version__,
        "load_average": {"before": load_before, "after": load_average()},
        "size": size, "batch": batch, "seconds_per_utterance": seconds, "dtype": str(dtype or torch.float32),
        "what": "Teacher.masked_and_unmasked (CNN once, both encoder passes in one batch)",
        "results": results,
    }
    emit(report, args.out)
    return report


if __name__ == "__main__":
    main()
