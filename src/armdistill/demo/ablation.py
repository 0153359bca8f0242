"""Small-scale ablation on the synthetic PR probe, several seeds per variant (mean +- sd).

Variants change one thing each against the reference (the demo recipe: ARM student, masking
distillation, paper reuse maths): an all-attention student of about the same size, plain
layer-to-layer distillation, and the release's reuse maths. Every run distils with the recipe
seed and probes the student with the same probe seed. A finished run (its ``metrics.json``) is
not repeated, so an interrupted ablation continues where it stopped.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from armdistill.config import apply_overrides, from_dict, to_dict
from armdistill.demo.config import DemoConfig
from armdistill.demo.stages import distill, probe, probe_manifests, probe_settings, synthesise, teacher_source
from armdistill.models.student import Student
from armdistill.threads import torch_threads


@dataclass(frozen=True)
class Variant:
    """``overrides``: dotted demo-file keys that turn the reference into this variant."""

    key: str
    label: str
    overrides: tuple[str, ...]


# tiny-mask's two extra query/key projections (2 x 2 x (128 x 128 + 128) = 66,048 weights) are paid
# for by a narrower FFN: 4 layers x (2 x 128 + 1) x 64 = 65,792 fewer weights at ffn_dim 192.
VARIANTS: tuple[Variant, ...] = (
    Variant("reference", "ARM (tiny-arm), masking distillation, paper reuse", ()),
    Variant("all_attention", "all-attention student (tiny-mask, ffn 192)",
            ("distill.student.preset=tiny-mask", "distill.student.ffn_dim=192")),
    Variant("layer_objective", "plain layer-to-layer distillation", ("distill.loss.objective=layer",)),
    Variant("release_reuse", "release reuse maths", ("distill.student.reuse_mode=release",)),
    # What `armdistill analyze-attention` suggests for the shipped teacher's mapped layers with tiny-arm's two
    # computing layers (benchmarks/results/attention_default_teacher/demo_layers; scripts/analyze_default_teacher.py).
    Variant("suggested_pattern", "reuse pattern suggested by analyze-attention",
            ("distill.student.reuse_pattern=[true, false, true, false]",)),
)


def variant_config(base: DemoConfig, variant: Variant, seed: int) -> DemoConfig:
    """The base demo with the variant's overrides and ``seed`` for recipe and probe."""
    data = apply_overrides(to_dict(base), [*variant.overrides, f"distill.seed={seed}", f"probe.settings.seed={seed}"])
    return from_dict(DemoConfig, data)


def run_one(cfg: DemoConfig, corpus: Path, manifests: dict[str, Path], out: Path) -> dict[str, Any]:
    """Distil and probe one (variant, seed); reuses a finished run's results."""
    result_path = out / "result.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    began = time.perf_counter()
    student_dir = distill(cfg, corpus, out)
    trained = time.perf_counter() - began
    student = Student.from_pretrained(student_dir)
    metrics = probe("student", student, manifests, out / "probe", probe_settings(cfg))
    result = {"per": metrics["test"], "valid_per": metrics["valid"], "params": student.num_parameters(),
              "distill_seconds": round(trained, 1), "seconds": round(time.perf_counter() - began, 1)}
    result_path.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} +- {sd:.3f}"


def table(rows: list[dict[str, Any]], teacher_per: float, seeds: list[int]) -> str:
    """Markdown: one row per variant, PER mean +- sd (sample sd) over seeds, per-seed values."""
    lines = [
        f"| variant | params (backbone + heads) | test PER, mean +- sd over seeds {seeds} | per seed | distill s/run |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        pers = [r["per"] for r in row["runs"]]
        p = row["runs"][0]["params"]
        seconds = statistics.mean(r["distill_seconds"] for r in row["runs"])
        lines.append(f"| {row['label']} | {p['params_backbone']:,} + {p['params_heads']:,} | {_mean_sd(pers)} | "
                     f"{', '.join(f'{v:.3f}' for v in pers)} | {seconds:.0f} |")
    lines.append(f"| teacher (same probe, reference) | - | {teacher_per:.3f} | - | - |")
    return "\n".join(lines) + "\n"


def run_ablation(base: DemoConfig, out: str | Path, seeds: list[int]) -> str:
    """Run every variant for every seed; writes ``ablation.json`` and ``ablation.md``."""
    with torch_threads(base.threads):
        return _run_all(base, Path(out), seeds)


def _run_all(base: DemoConfig, out: Path, seeds: list[int]) -> str:
    began = time.perf_counter()
    corpus = synthesise(base)
    manifests = probe_manifests(base, corpus, out)
    teacher = probe("teacher", f"teacher:{teacher_source(base)}", manifests, out / "teacher", probe_settings(base))
    rows = []
    for variant in VARIANTS:
        row: dict[str, Any] = {"key": variant.key, "label": variant.label, "overrides": list(variant.overrides), "runs": []}
        for seed in seeds:
            print(f"[{time.perf_counter() - began:6.0f} s] ablation: {variant.label}, seed {seed}", file=sys.stderr)
            cfg = variant_config(base, variant, seed)
            row["runs"].append({"seed": seed, **run_one(cfg, corpus, manifests, out / variant.key / f"seed{seed}")})
        rows.append(row)
    text = table(rows, teacher["test"], seeds)
    wall = round(time.perf_counter() - began, 1)
    summary = {"seeds": seeds, "teacher_per": teacher["test"], "variants": rows, "wall_seconds": wall,
               "probe": to_dict(probe_settings(base)), "recipe": to_dict(base.distill)}
    (out / "ablation.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "ablation.md").write_text(text + f"\nWall time {wall:.0f} s.\n")
    return text

