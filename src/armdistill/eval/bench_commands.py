"""``armdistill bench`` and ``armdistill analyze-attention``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from armdistill.config import ConfigError
from armdistill.models.attention import REUSE_MODES

DEVICES = ("cpu", "cuda")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench",
        help="measure parameters, MACs, latency, throughput, memory and RTF of models",
        description="Each UPSTREAM is a student preset (random weights), a student directory, a teacher source "
        "(anything Teacher.from_pretrained takes), hubert-base (random weights, HuBERT Base's shape), an .onnx "
        "file or a directory holding model.onnx. Writes OUT/bench.json and OUT/bench.png.",
    )
    p.add_argument("upstreams", nargs="+", metavar="UPSTREAM")
    p.add_argument("--device", choices=DEVICES, default="cpu")
    p.add_argument("--batch", type=int, default=4, help="utterances per throughput batch (default 4)")
    p.add_argument("--seconds", type=float, nargs="+", default=[1.0, 10.0, 30.0],
                   help="latency input lengths in seconds, batch 1 (default 1 10 30)")
    p.add_argument("--throughput-seconds", type=float, default=10.0, help="length of each throughput utterance")
    p.add_argument("--reuse-modes", nargs="+", choices=REUSE_MODES, default=list(REUSE_MODES),
                   help="reuse modes to run each student in (default all)")
    p.add_argument("--threads", type=int, default=None, help="torch / onnxruntime threads (default torch's)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs per model and input (default 1)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per model and input (default 5)")
    p.add_argument("--out", type=Path, default=Path("bench_out"))
    p.set_defaults(func=_bench)

    p = subparsers.add_parser(
        "analyze-attention",
        help="attention-map similarity between layers and the reuse pattern it suggests",
        description="Attention maps of every layer and head of a teacher (or student) on real utterances, "
        "padding excluded; similarity of every pair of layers (mean 1 - Jensen-Shannon divergence in bits, heads "
        "matched one to one); the best reuse pattern with K computing layers (exact dynamic programme) beside "
        "the paper's alternation. Writes OUT/analysis.json and OUT/similarity.png.",
    )
    p.add_argument("model", metavar="TEACHER", help="teacher source, hubert-base, student directory or preset")
    p.add_argument("--data", required=True, type=Path, help="manifest (.tsv) of the utterances")
    p.add_argument("--utterances", type=int, default=50, help="first N utterances of the manifest (default 50)")
    p.add_argument("--computing", type=int, default=None, metavar="K",
                   help="computing layers of the suggested pattern (default: half the layers, rounded up)")
    p.add_argument("--layers", type=int, nargs="+", default=None,
                   help="only these layers, 0-based and in order (as loss.layer_map numbers teacher layers)")
    p.add_argument("--batch", type=int, default=8, help="utterances per forward (padding is excluded exactly)")
    p.add_argument("--device", choices=DEVICES, default="cpu")
    p.add_argument("--out", type=Path, default=Path("attention_analysis"))
    p.set_defaults(func=_analyze)


def _bench(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from armdistill.eval.bench import BenchSettings, label, run_bench, threads_text

    settings = BenchSettings(
        device=args.device, batch=args.batch, seconds=tuple(args.seconds), throughput_seconds=args.throughput_seconds,
        warmup=args.warmup, repeats=args.repeats, reuse_modes=tuple(args.reuse_modes), threads=args.threads,
    )
    result = run_bench(args.upstreams, settings, args.out)
    table = Table(title=f"{result['device']}, {threads_text(result['threads'])} (median latency, ms)")
    for column in ["model", "params", "GMACs/s", *[f"{s:g} s" for s in settings.seconds], "audio s/s", "peak MB"]:
        table.add_column(column, justify="left" if column == "model" else "right")
    for r in result["records"]:
        macs = "-" if r["gmacs_per_second"] is None else f"{r['gmacs_per_second']:.3f}"
        memory = "-" if r["peak_memory_mb"] is None else f"{r['peak_memory_mb']:.0f}"
        table.add_row(label(r), f"{r['params_total']:,}", macs, *[f"{v['median']:.1f}" for v in r["latency_ms"].values()],
                      f"{r['throughput_audio_s_per_s']:.1f}", memory)
    Console(width=None if sys.stdout.isatty() else 160).print(table)
    print(f"wrote {args.out / 'bench.json'} and {args.out / 'bench.png'}")
    return 0


def _analyze(args: argparse.Namespace) -> int:
    from armdistill.data.audio import load_audio
    from armdistill.data.manifest import read_manifest
    from armdistill.eval.attention_analysis import analyze, plot_similarity, spell_pattern
    from armdistill.eval.bench import load_model

    if args.utterances < 1 or args.batch < 1:
        raise ConfigError(f"--utterances and --batch: expected at least 1, got {args.utterances}, {args.batch}")
    manifest = read_manifest(args.data)
    count = min(args.utterances, len(manifest))
    wavs = [torch.from_numpy(load_audio(manifest.audio_path(i))) for i in range(count)]
    model = load_model(args.model).to(args.device)
    result = {"model": args.model, "data": str(args.data), **analyze(model, wavs, args.layers, args.computing,
                                                                      args.batch, args.device)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "analysis.json").write_text(json.dumps(result, indent=2) + "\n")
    plot_similarity(result, args.out / "similarity.png", f"{Path(args.model).name}: attention similarity, "
                    f"{count} utterances")

    print(f"layers {result['layers']} (0-based), {result['computing']} computing (C), the rest reuse (R):")
    print(f"  suggested   {spell_pattern(result['suggested_pattern'])}   total similarity {result['suggested_total']:.4f}")
    print(f"  alternation {spell_pattern(result['alternation_pattern'])}   total similarity {result['alternation_total']:.4f}")
    print(f"reuse_pattern: {json.dumps(result['suggested_pattern'])}")
    print(f"wrote {args.out / 'analysis.json'} and {args.out / 'similarity.png'}")
    return 0
