"""The README's efficiency table from a ``bench.json``: each model's measured speed-up over the
reference (default: the first teacher record) beside its MACs ratio.

    python benchmarks/bench_table.py benchmarks/results/bench_cpu_amd_epyc_2core/bench.json [--reference hubert-base]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from armdistill.eval.bench import label


def table(result: dict, reference: str | None = None, length: str | None = None) -> str:
    records = result["records"]
    ref = next(r for r in records if (r["name"] == reference if reference else r["kind"] == "teacher"))
    length = length or max(ref["latency_ms"], key=float)
    lines = [
        f"| model | params | GMACs / s | MACs vs {ref['name']} | latency {length} s (min-max), ms | faster | "
        f"throughput, audio s/s | faster | peak MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        lat = r["latency_ms"][length]
        macs = "-" if r["gmacs_per_second"] is None else f"{r['gmacs_per_second']:.3f}"
        ratio = "-" if r["gmacs_per_second"] is None else f"{r['gmacs_per_second'] / ref['gmacs_per_second']:.1%}"
        memory = "-" if r["peak_memory_mb"] is None else f"{r['peak_memory_mb']:.0f}"
        lines.append(
            f"| {label(r)} | {r['params_total'] / 1e6:.2f}M | {macs} | {ratio} | {lat['median']:.0f} "
            f"({lat['min']:.0f}-{lat['max']:.0f}) | {ref['latency_ms'][length]['median'] / lat['median']:.2f}x | "
            f"{r['throughput_audio_s_per_s']:.1f} | "
            f"{r['throughput_audio_s_per_s'] / ref['throughput_audio_s_per_s']:.2f}x | {memory} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench_json", type=Path)
    parser.add_argument("--reference", default=None, help="record name to compare against (default: first teacher)")
    parser.add_argument("--seconds", default=None, help="latency input length to show (default: the longest)")
    args = parser.parse_args()
    print(table(json.loads(args.bench_json.read_text()), args.reference, args.seconds))


if __name__ == "__main__":
    main()
