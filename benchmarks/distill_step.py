"""A full masking-distillation training step, release-style vs ours, on one device.

One step: sample the span mask, run the frozen teacher masked and unmasked, run the student
forward and backward on the project's loss (``DistillModule.step_loss``), take an AdamW step.
Every variant trains on the same utterances (a fixed list of LibriSpeech-like lengths, random
audio, random weights: speed does not depend on them) and is timed over passes through them
after a warm-up, the best pass counting; throughput counts valid (unpadded) audio seconds per
wall second.

* ``release_style``: the release's design: ``release`` reuse maths (stored maps, second
  softmax), loss over padded frames, two full teacher passes (CNN run for each), fp16 autocast
  with a gradient scaler on CUDA, the shuffled utterances in padded batches of a fixed count.
* ``ours``: paper maths, teacher CNN once and both encoder passes in one batch, SDPA teacher
  attention, the reuse kernel ``speed.reuse_kernel=auto`` picks, bf16 autocast on CUDA, the same
  utterances batched by seconds (``DynamicBatchSampler``, budget ``batch x longest``).
* ``ours_*``: ours with one fast path switched (off, or to its alternative).

    python benchmarks/distill_step.py [--device cuda] [--out FILE] [--compile] [--variants NAME ...]

``--device cpu`` alone picks small shapes (tiny-arm student, 256-d 4-layer teacher, 12
utterances of at most 4 s, two passes) that finish in about a minute on an idle 2-core CPU.
Peak memory is the CUDA allocator's peak over the timed passes; on CPU it is the process's peak
resident memory over them (models, libraries and allocator caches included: an upper bound,
comparable between variants only roughly).
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import gc
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from rich.console import Console
from rich.table import Table
from transformers import PreTrainedModel

from armdistill.config import from_dict
from armdistill.data.sampler import DynamicBatchSampler, padding_fraction
from armdistill.distill.config import DistillConfig, plan, resolve_proj_dim
from armdistill.distill.module import DistillModule
from armdistill.distill.speed import compile_models, resolve_reuse_kernel
from armdistill.eval.features import SAMPLE_RATE
from armdistill.models.student import Student
from armdistill.teachers import Teacher, make_base_model, make_random_model

from _report import device_name, load_average, write_json


@dataclass(frozen=True)
class Variant:
    """How one configuration runs the step (see the module docstring)."""

    batching: str  # "fixed" (a count per batch) or "dynamic" (seconds per batch)
    reuse_mode: str
    release_compat: bool
    share_front_end: bool
    batch_masked: bool
    teacher_sdpa: bool
    reuse_kernel: str
    precision: str  # "16-mixed", "bf16-mixed" or "32-true"
    compile: bool = False
    pad_to_seconds: float | None = None


def variants(device: torch.device, teacher_kind: str, compile_ours: bool) -> dict[str, Variant]:
    gpu = device.type == "cuda"
    release = Variant(
        batching="fixed", reuse_mode="release", release_compat=True, share_front_end=False, batch_masked=False,
        # the release's teachers ran their own attention: explicit maps, as transformers' eager WavLM
        teacher_sdpa=teacher_kind != "wavlm", reuse_kernel="sdpa", precision="16-mixed" if gpu else "32-true",
    )
    ours = Variant(
        batching="dynamic", reuse_mode="paper", release_compat=False, share_front_end=True, batch_masked=True,
        teacher_sdpa=True, reuse_kernel="auto", precision="bf16-mixed" if gpu else "32-true",
        compile=compile_ours, pad_to_seconds=1.0 if compile_ours else None,
    )
    other_kernel = "sdpa" if resolve_reuse_kernel("auto", device) == "stored" else "stored"
    table = {
        "release_style": release,
        "ours": ours,
        "ours_fixed_batches": dataclasses.replace(ours, batching="fixed"),
        "ours_two_teacher_passes": dataclasses.replace(ours, share_front_end=False, batch_masked=False),
        "ours_teacher_eager": dataclasses.replace(ours, teacher_sdpa=False),
        f"ours_reuse_{other_kernel}": dataclasses.replace(ours, reuse_kernel=other_kernel),
    }
    if gpu:
        table["ours_fp16"] = dataclasses.replace(ours, precision="16-mixed")
    if gpu and not compile_ours:
        table["ours_compile"] = dataclasses.replace(ours, compile=True, pad_to_seconds=1.0)
    return table


def librispeech_like_seconds(count: int, max_seconds: float, seed: int) -> list[float]:
    """Durations skewed long like LibriSpeech's training sets: ``1 + (max - 1) * Beta(2.7, 1)``
    (mean 12.3 s for a 16.5 s maximum)."""
    rng = np.random.default_rng(seed)
    return [round(1.0 + (max_seconds - 1.0) * float(b), 3) for b in rng.beta(2.7, 1.0, size=count)]


def make_teacher_model(kind: str, size: str, student: Student, seed: int) -> PreTrainedModel:
    """A random-weight HuBERT / WavLM: Base-shaped (768-d, 12 layers) or small (the student's
    head width and layer count, 4 heads, 64-channel CNN)."""
    if size == "base":
        return make_base_model(kind, seed)
    width = student.config.proj_dim
    return make_random_model(
        kind, seed, conv_dim=[64] * 7, hidden_size=width, num_hidden_layers=student.config.num_layers,
        num_attention_heads=4, intermediate_size=4 * width, num_conv_pos_embeddings=32, num_conv_pos_embedding_groups=8,
    )


def make_batches(sizes: Sequence[int], variant: Variant, batch: int, batch_seconds: float, seed: int) -> list[list[int]]:
    if variant.batching == "fixed":
        order = np.random.default_rng(seed).permutation(len(sizes)).tolist()
        return [order[i : i + batch] for i in range(0, len(order), batch)]
    # the recipe's 10 length buckets, fewer when each would hold less than a release batch
    buckets = max(1, min(10, len(sizes) // batch))
    return list(DynamicBatchSampler(sizes, batch_seconds, SAMPLE_RATE, buckets, shuffle=True, seed=seed))


def build_module(variant: Variant, teacher_model: PreTrainedModel, preset: str, device: torch.device, seed: int) -> DistillModule:
    cfg = from_dict(DistillConfig, {
        "student": {"preset": preset, "reuse_mode": variant.reuse_mode},
        "teacher": {"batch_masked": variant.batch_masked, "share_front_end": variant.share_front_end,
                    "sdpa": variant.teacher_sdpa},
        "loss": {"release_compat": variant.release_compat},
        "trainer": {"precision": variant.precision},
        "speed": {"reuse_kernel": variant.reuse_kernel, "compile": variant.compile, "pad_to_seconds": variant.pad_to_seconds},
    })
    t = cfg.teacher
    teacher = Teacher(teacher_model, False, t.batch_masked, t.share_front_end, t.sdpa).to(device)
    torch.manual_seed(seed)
    cfg = resolve_proj_dim(cfg, teacher.dim)
    module = DistillModule(Student(cfg.student_model), teacher, cfg, plan(cfg), "random weights").to(device).train()
    if cfg.speed.compile:
        compile_models(module.student, teacher)
    return module


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _release_memory(device: torch.device) -> None:
    """Free what the last variant held, so that the next one's peak starts from live memory."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        return
    try:  # glibc keeps freed heap pages resident until trimmed
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:  # Linux: "5" resets the peak resident set size (VmHWM)
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _peak_gib(device: torch.device) -> float | None:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    try:
        found = re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text())
    except OSError:
        return None
    return int(found.group(1)) / 2**20 if found else None


def run_variant(
    name: str, variant: Variant, teacher_model: PreTrainedModel, audio: list[torch.Tensor], args: argparse.Namespace,
    device: torch.device,
) -> dict[str, Any]:
    """Warm up, then time ``--passes`` passes over every batch (the best counts); returns the
    variant's result entry."""
    sizes = [len(a) for a in audio]
    batches = make_batches(sizes, variant, args.batch, args.batch_seconds, args.seed)
    module = build_module(variant, teacher_model, args.student, device, args.seed)
    optimizer = module.configure_optimizers()["optimizer"]
    fp16, bf16 = variant.precision == "16-mixed", variant.precision == "bf16-mixed"
    scaler = torch.amp.GradScaler(device.type, enabled=fp16)
    autocast = torch.autocast(device.type, dtype=torch.float16 if fp16 else torch.bfloat16, enabled=fp16 or bf16)

    def step(i: int, indices: list[int]) -> None:
        lengths = torch.tensor([sizes[j] for j in indices])
        wav = torch.zeros(len(indices), int(lengths.max()))
        for row, j in enumerate(indices):
            wav[row, : sizes[j]] = audio[j]
        wav, lengths = wav.to(device, non_blocking=True), lengths.to(device)
        with autocast:
            result, _ = module.step_loss(wav, lengths, np.random.default_rng([args.seed, i]))
        scaler.scale(result.loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    warmup = batches if variant.compile else batches[: args.warmup]  # compiled: every shape once
    for i, indices in enumerate(warmup):
        step(i, indices)
    _sync(device)
    _reset_peak(device)
    passes, cpu_passes = [], []
    for _ in range(args.passes):
        start, cpu_start = time.perf_counter(), time.process_time()
        for i, indices in enumerate(batches):
            step(i, indices)
        _sync(device)
        passes.append(time.perf_counter() - start)
        cpu_passes.append(time.process_time() - cpu_start)
    seconds = min(passes)
    valid = sum(sizes) / SAMPLE_RATE
    entry = {
        "audio_s_per_s": round(valid / seconds, 2),
        # on a shared CPU the process's own CPU time is steadier than wall time
        "audio_s_per_cpu_s": round(valid / min(cpu_passes), 2) if device.type == "cpu" else None,
        "peak_gib": None if (peak := _peak_gib(device)) is None else round(peak, 3),
        "padding_fraction": round(padding_fraction(batches, sizes), 4),
        "batches": len(batches),
        "valid_audio_seconds": round(valid, 2),
        "wall_seconds": round(seconds, 3),
        "pass_seconds": [round(p, 3) for p in passes],
        "reuse_kernel": resolve_reuse_kernel(variant.reuse_kernel, device) if variant.reuse_mode == "paper" else None,
        "settings": dataclasses.asdict(variant),
    }
    del module, optimizer
    _release_memory(device)
    return entry


def print_table(results: dict[str, dict[str, Any]], console: Console) -> None:
    base = results.get("release_style")
    table = Table(title="masking-distillation step")
    cpu = base is not None and base["audio_s_per_cpu_s"] is not None
    columns = ["variant", "batches", "pad", "audio-s/s", "x rel", *(["per CPU-s", "x rel"] if cpu else []), "peak GiB", "x rel peak"]
    for column in columns:
        table.add_column(column, justify="left" if column == "variant" else "right", no_wrap=column == "variant")

    def ratio(r: dict[str, Any], key: str) -> str:
        return f"{r[key] / base[key]:.2f}" if base and r[key] and base[key] else "-"

    for name, r in results.items():
        cells = [name, str(r["batches"]), f"{r['padding_fraction']:.1%}", f"{r['audio_s_per_s']:.1f}", ratio(r, "audio_s_per_s")]
        if cpu:
            cells += [f"{r['audio_s_per_cpu_s']:.1f}", ratio(r, "audio_s_per_cpu_s")]
        cells += ["-" if r["peak_gib"] is None else f"{r['peak_gib']:.2f}", ratio(r, "peak_gib")]
        table.add_row(*cells)
    console.print(table)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--student", default=None, help="student preset (armhubert on CUDA, tiny-arm on CPU)")
    parser.add_argument("--teacher", choices=["hubert", "wavlm"], default="hubert")
    parser.add_argument("--teacher-size", choices=["base", "small"], default=None,
                        help="base: 768-d, 12 layers (CUDA default); small: the student's width and depth (CPU default)")
    parser.add_argument("--utterances", type=int, default=None, help="480 on CUDA, 12 on CPU")
    parser.add_argument("--max-seconds", type=float, default=None, help="longest utterance (16.5 on CUDA, 4 on CPU)")
    parser.add_argument("--batch", type=int, default=None, help="utterances per release-style batch (24 on CUDA, 4 on CPU)")
    parser.add_argument("--batch-seconds", type=float, default=None,
                        help="ours' padded seconds per batch (default: batch x the longest utterance)")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up steps (compiled variants: one full pass)")
    parser.add_argument("--passes", type=int, default=None, help="timed passes over the utterances, the best counting (3 on CUDA, 2 on CPU)")
    parser.add_argument("--compile", action="store_true", help="torch.compile in 'ours' itself (default: a separate ours_compile on CUDA)")
    parser.add_argument("--variants", nargs="+", default=None, help="run only these (default: all)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads on CPU")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    args = parser.parse_args(argv)
    gpu = args.device.startswith("cuda")
    defaults = {"student": "armhubert" if gpu else "tiny-arm", "teacher_size": "base" if gpu else "small",
                "utterances": 480 if gpu else 12, "passes": 3 if gpu else 2, "max_seconds": 16.5 if gpu else 4.0, "batch": 24 if gpu else 4}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    seconds = librispeech_like_seconds(args.utterances, args.max_seconds, args.seed)
    if args.batch_seconds is None:
        args.batch_seconds = args.batch * max(seconds)
    generator = torch.Generator().manual_seed(args.seed)
    audio = [0.1 * torch.randn(round(s * SAMPLE_RATE), generator=generator) for s in seconds]
    probe = Student.from_preset(args.student)
    teacher_model = make_teacher_model(args.teacher, args.teacher_size, probe, args.seed)
    table = variants(device, args.teacher, args.compile)
    unknown = sorted(set(args.variants or []) - set(table))
    if unknown:
        raise SystemExit(f"--variants: unknown {unknown}; known: {sorted(table)}")
    chosen = {name: v for name, v in table.items() if args.variants is None or name in args.variants}
    console = Console(width=None if sys.stdout.isatty() else 110)
    load_before = load_average()
    results = {}
    for name, variant in chosen.items():
        results[name] = run_variant(name, variant, teacher_model, audio, args, device)
        console.print(f"{name}: {results[name]['audio_s_per_s']} audio-s/s, peak {results[name]['peak_gib']} GiB")
    print_table(results, console)
    report = {
        "device": device_name(device),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "load_average": {"before": load_before, "after": load_average()},
        "settings": {
            "student": args.student, "teacher": f"{args.teacher}-{args.teacher_size} (random weights)",
            "teacher_params": sum(p.numel() for p in teacher_model.parameters()),
            "utterances": args.utterances, "max_seconds": args.max_seconds, "mean_seconds": round(float(np.mean(seconds)), 3),
            "release_batch": args.batch, "ours_batch_seconds": round(args.batch_seconds, 3), "warmup_steps": args.warmup,
            "timed_passes": args.passes,
            "seed": args.seed,
        },
        "results": results,
    }
    if args.out:
        write_json(report, args.out)
    return report


if __name__ == "__main__":
    main()
