"""``armdistill bench``: what a model costs to run, measured, beside what it is counted to cost.

For each model (and each reuse mode of a student): parameters, MACs per second of audio
(models/macs.py; attention as the mode computes it), latency of one utterance per input length,
throughput of a batch (audio seconds per wall second), the peak extra memory of one batch
forward, and the real-time factor. Inputs are random, unpadded waveforms: every utterance of a
batch has the same length. Timing is interleaved: each repeat runs every model once per input,
so a change in machine load touches every model alike. After ``warmup`` untimed runs, each
figure is the median (and min, max) over ``repeats`` runs. On CPU the process CPU time of each
call is recorded too: with one thread on a shared machine it estimates the latency the machine
would give unloaded, which wall time under load does not.
"""

from __future__ import annotations

import ctypes
import gc
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import Progress
from torch import Tensor

from armdistill.checks import check_range
from armdistill.config import ConfigError
from armdistill.errors import expected
from armdistill.frames import SAMPLE_RATE
from armdistill.io.onnx_model import OnnxStudent, onnx_model_path
from armdistill.models.macs import gmacs_per_second
from armdistill.models.student import Student
from armdistill.threads import torch_threads

MACS_SECONDS = 10.0


@dataclass
class BenchSettings:
    """``seconds``: latency input lengths; throughput runs ``batch`` utterances of ``throughput_seconds``."""

    device: str = "cpu"
    batch: int = 4
    seconds: tuple[float, ...] = (1.0, 10.0, 30.0)
    throughput_seconds: float = 10.0
    warmup: int = 1
    repeats: int = 5
    reuse_modes: tuple[str, ...] = ("paper", "explicit", "release")
    threads: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        check_range("--batch", self.batch, ge=1)
        check_range("--repeats", self.repeats, ge=1)
        check_range("--warmup", self.warmup, ge=0)
        if not self.seconds or min(self.seconds) <= 0:
            raise ConfigError(expected("--seconds", "positive input lengths", list(self.seconds)))
        check_range("--throughput-seconds", self.throughput_seconds, gt=0)
        check_range("--threads", self.threads, ge=1, null=True)


@dataclass
class Runner:
    """One model in one mode: ``run(wav [batch, samples])`` runs a forward pass to completion."""

    name: str
    kind: str
    reuse_mode: str | None
    params: dict[str, int | None]
    gmacs_per_second: float | None
    run: Callable[[Tensor], None]


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def student_runners(name: str, student: Student, modes: Sequence[str], device: torch.device) -> list[Runner]:
    student = student.eval().to(device)
    runners = []
    for mode in modes:
        def run(wav: Tensor, mode: str = mode) -> None:
            student.reuse_mode = mode
            with torch.inference_mode():
                student(wav)

        student.reuse_mode = mode
        macs = gmacs_per_second(lambda wav: student(wav.to(device)), MACS_SECONDS)
        runners.append(Runner(name, "student", mode, student.num_parameters(), macs, run))
    return runners


def teacher_runner(name: str, teacher: torch.nn.Module, device: torch.device) -> Runner:
    teacher = teacher.to(device)

    def run(wav: Tensor) -> None:
        teacher.layer_outputs(wav)

    total = sum(p.numel() for p in teacher.model.parameters())
    params = {"params_total": total, "params_backbone": total, "params_heads": 0}
    return Runner(name, "teacher", None, params, gmacs_per_second(run, MACS_SECONDS), run)


def onnx_runner(name: str, path: Path, device: torch.device, threads: int | None) -> Runner:
    """An exported student (inputs ``wav`` [batch, samples] float32, ``lengths`` [batch] int64).

    Parameters are the elements of the graph's stored weights (initializers); exporters rename and
    fold weights, so the backbone / heads split and MACs are not known for a graph (null).
    """
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    total = sum(math.prod(init.dims) for init in graph.initializer)
    model = OnnxStudent(path, threads, device.type)

    def run(wav: Tensor) -> None:
        x = wav.cpu().numpy()
        model(x, np.full(x.shape[0], x.shape[1]))

    return Runner(name, "onnx", None, {"params_total": total, "params_backbone": None, "params_heads": None}, None, run)


def load_model(spec: str, seed: int = 0) -> torch.nn.Module:
    """A Student (preset with random weights seeded by ``seed``, or a student directory) or a
    Teacher (``hubert-base`` with random weights, or any teacher source)."""
    from armdistill.eval.upstream import StudentUpstream, TeacherUpstream, load_upstream
    from armdistill.teachers.tiny import RANDOM_TEACHERS

    if spec in RANDOM_TEACHERS:
        return RANDOM_TEACHERS[spec](seed)
    upstream = load_upstream(spec, seed=seed)
    if isinstance(upstream, StudentUpstream):
        return upstream.student
    if isinstance(upstream, TeacherUpstream):
        return upstream.teacher
    raise ConfigError(f"{spec}: a feature baseline, not a model; expected a preset, a student or teacher "
                     "source, hubert-base or (bench) an ONNX export")


def load_runners(spec: str, settings: BenchSettings) -> list[Runner]:
    """:func:`load_model`'s sources, an ONNX file or a directory holding ``model.onnx``."""
    device = torch.device(settings.device)
    onnx_path = onnx_model_path(Path(spec))
    if onnx_path is not None:
        return [onnx_runner(spec, onnx_path, device, settings.threads)]
    model = load_model(spec, settings.seed)
    if isinstance(model, Student):
        return student_runners(spec, model, settings.reuse_modes, device)
    return [teacher_runner(spec, model, device)]


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {field}")


def peak_memory_mb(runner: Runner, wav: Tensor, device: torch.device) -> float | None:
    """Extra memory at the peak of one forward beyond what was held before it: the CUDA
    allocator's peak, or on CPU the growth of the resident set (Linux: peak RSS reset through
    ``/proc/self/clear_refs`` after returning freed heap memory with ``malloc_trim``)."""
    gc.collect()
    if device.type == "cuda":
        if runner.kind == "onnx":
            return None  # onnxruntime's CUDA memory is not torch's allocator
        torch.cuda.empty_cache()
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        runner.run(wav)
        _synchronise(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")
        before = _rss_kib("VmRSS")
    except OSError:
        return None
    runner.run(wav)
    return max(0, _rss_kib("VmHWM") - before) / 1024


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def _summary(times: list[float]) -> dict[str, float]:
    ms = [1000 * t for t in times]
    return {"median": statistics.median(ms), "min": min(ms), "max": max(ms)}


def measure(runners: Sequence[Runner], settings: BenchSettings) -> list[dict[str, Any]]:
    """Time every runner, interleaved; one record per runner."""
    device = torch.device(settings.device)
    generator = torch.Generator().manual_seed(settings.seed)
    inputs = {s: torch.randn(1, round(s * SAMPLE_RATE), generator=generator).to(device) for s in settings.seconds}
    batch = torch.randn(settings.batch, round(settings.throughput_seconds * SAMPLE_RATE),
                        generator=generator).to(device)
    jobs = [*inputs.items(), (None, batch)]
    times: dict[tuple[int, float | None], list[float]] = {(r, s): [] for r in range(len(runners)) for s, _ in jobs}
    cpu_times: dict[tuple[int, float | None], list[float]] = {key: [] for key in times}
    with Progress(transient=True) as progress:
        task = progress.add_task("bench", total=(settings.warmup + settings.repeats) * len(runners) * len(jobs))
        for rep in range(settings.warmup + settings.repeats):
            for r, runner in enumerate(runners):
                progress.update(task, description=f"{runner.name} {runner.reuse_mode or ''} "
                                f"(repeat {rep + 1 - settings.warmup if rep >= settings.warmup else 'warm-up'})")
                for seconds, wav in jobs:
                    _synchronise(device)
                    began, cpu_began = time.perf_counter(), time.process_time()
                    runner.run(wav)
                    _synchronise(device)
                    if rep >= settings.warmup:
                        times[r, seconds].append(time.perf_counter() - began)
                        cpu_times[r, seconds].append(time.process_time() - cpu_began)
                    progress.advance(task)
    records = []
    for r, runner in enumerate(runners):
        latency = {f"{s:g}": _summary(times[r, s]) for s in settings.seconds}
        batch_seconds = statistics.median(times[r, None])
        records.append({
            "name": runner.name,
            "kind": runner.kind,
            "reuse_mode": runner.reuse_mode,
            **runner.params,
            "gmacs_per_second": runner.gmacs_per_second,
            "latency_ms": latency,
            "rtf": {key: v["median"] / 1000 / float(key) for key, v in latency.items()},
            "cpu_ms": None if device.type == "cuda" else {f"{s:g}": _summary(cpu_times[r, s]) for s in settings.seconds},
            "throughput_audio_s_per_s": settings.batch * settings.throughput_seconds / batch_seconds,
            "peak_memory_mb": peak_memory_mb(runner, batch, device),
        })
    return records


def run_bench(specs: Sequence[str], settings: BenchSettings, out: str | Path) -> dict[str, Any]:
    """Measure every model of ``specs``; writes ``out/bench.json`` and ``out/bench.png``."""
    out = Path(out)
    with torch_threads(settings.threads):
        load_before = os.getloadavg()
        runners = [runner for spec in specs for runner in load_runners(spec, settings)]
        records = measure(runners, settings)
        device = torch.device(settings.device)
        result = {
            "device": device_name(device),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "settings": {**asdict(settings), "dtype": "float32", "input": "random waveforms, unpadded"},
            "load_average_1min": {"before": load_before[0], "after": os.getloadavg()[0]},
            "records": records,
        }
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
    plot_bench(result, out / "bench.png")
    return result


def threads_text(count: int) -> str:
    return f"{count} thread" + ("" if count == 1 else "s")


def label(record: dict[str, Any]) -> str:
    return record["name"] + (f" ({record['reuse_mode']})" if record["reuse_mode"] else "")


def plot_bench(result: dict[str, Any], path: Path) -> Path:
    """Throughput against counted GMACs per second of audio, one point per model and mode."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    counted = [r for r in result["records"] if r["gmacs_per_second"] is not None]
    for record in counted:
        ax.scatter(record["gmacs_per_second"], record["throughput_audio_s_per_s"], s=18)
        ax.annotate(label(record), (record["gmacs_per_second"], record["throughput_audio_s_per_s"]),
                    textcoords="offset points", xytext=(4, 3), fontsize=7)
    if counted:
        plain = FuncFormatter(lambda value, _: f"{value:g}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(plain)
            axis.set_minor_formatter(plain)
    s = result["settings"]
    ax.set_xlabel("GMACs per second of audio (counted)")
    ax.set_ylabel(f"throughput, audio s / s (batch {s['batch']} x {s['throughput_seconds']:g} s)")
    ax.set_title(f"{result['device']}, {threads_text(result['threads'])}, torch {result['torch']}", fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.savefig(path, dpi=110)
    return path
