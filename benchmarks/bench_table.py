"""The README's efficiency table from a ``bench.json``: each model's measured speed-up over the
reference (default: the first teacher record), in wall and CPU time, beside its MACs ratio.

    python benchmarks/bench_table.py benchmarks/results/bench_cpu_amd_epyc_2core/bench.json [--reference hubert-base]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from armdistill.eval.bench import label


def table(result: dict, reference: str | None = None, length: str = "10") -> str:
    """Markdown rows: MACs and their ratio to the reference, then at one input length (batch 1) the
    median wall latency (min-max) and median process CPU time, each with the reference's / the
    model's (how many times faster), then batch throughput and peak extra memory."""
    records = result["records"]
    ref = next(r for r in records if (r["name"] == reference if reference else r["kind"] == "teacher"))
    lines = [
        f"| model | params | GMACs / s | MACs vs {ref['name']} | wall {length} s, ms: median (min-max) | faster | "
        f"CPU time {length} s, ms | faster | throughput, audio s/s | peak MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def times_faster(key: str, r: dict) -> str:
        if r[key] is None or ref[key] is None:
            return "-"
        return f"{ref[key][length]['median'] / r[key][length]['median']:.2f}x"

    for r in records:
        lat = r["latency_ms"][length]
        macs = "-" if r["gmacs_per_second"] is None else f"{r['gmacs_per_second']:.3f}"
        ratio = "-" if r["gmacs_per_second"] is None else f"{r['gmacs_per_second'] / ref['gmacs_per_second']:.1%}"
        cpu = "-" if r["cpu_ms"] is None else f"{r['cpu_ms'][length]['median']:.0f}"
        memory = "-" if r["peak_memory_mb"] is None else f"{r['peak_memory_mb']:.0f}"
        lines.append(
            f"| {label(r)} | {r['params_total'] / 1e6:.2f}M | {macs} | {ratio} | {lat['median']:.0f} "
            f"({lat['min']:.0f}-{lat['max']:.0f}) | {times_faster('latency_ms', r)} | {cpu} | {times_faster('cpu_ms', r)} | "
            f"{r['throughput_audio_s_per_s']:.2f} | {memory} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench_json", type=Path)
    parser.add_argument("--reference", default=None, help="record name to compare against (default: first teacher)")
    parser.add_argument("--seconds", default="10", help="latency input length to show (default 10)")
    args = parser.parse_args()
    print(table(json.loads(args.bench_json.read_text()), args.reference, args.seconds))


if __name__ == "__main__":
    main()
