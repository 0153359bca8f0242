"""Small-scale ablation on the synthetic PR probe: variants x schedules x seeds, paired by seed.

Variants change one thing each against the one they are compared with (``against``; mostly the
reference: the ablation recipe, i.e. ARM student, masking distillation, layer-normalised targets,
mask prob 0.8, paper reuse maths). Every variant runs at each schedule of ``ablation.steps`` (N and
2N steps: a difference that holds at both is not an artefact of an unfinished schedule). Every
run distils with the recipe seed and probes the student with the same probe seed, so seed s of a
variant and seed s of its baseline share initialisation, batch order, masks and probe: their
difference is the paired sample whose mean, sd and t-interval over seeds the report gives.
Runs go to ``jobs`` worker processes, seed by seed; a finished run (its ``result.json``) and the
teacher's probe (its ``metrics.json``) are not repeated and an unfinished distillation resumes
from its newest checkpoint, so an interrupted ablation continues where it stopped. A variant that
resolves to a run already listed (:func:`run_identity`) shares that run instead of repeating it.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scipy import stats

from armdistill.config import ConfigError, apply_overrides, from_dict, to_dict
from armdistill.console import apply_console_state, console_state
from armdistill.demo.config import DemoConfig
from armdistill.demo.stages import distill, probe, probe_manifests, probe_settings, synthesise, teacher_source
from armdistill.distill.config import resolved_dict
from armdistill.errors import expected
from armdistill.models.student import Student
from armdistill.threads import torch_threads

CONFIDENCE = 0.95
REFERENCE = "reference"


@dataclass(frozen=True)
class Variant:
    """``overrides``: dotted demo-file keys that turn ``against`` (a variant key) into this variant."""

    key: str
    label: str
    overrides: tuple[str, ...]
    against: str = REFERENCE


LAYER_OBJECTIVE = ("distill.loss.objective=layer",)
RAW_TARGETS = ("distill.loss.target_norm=none",)

# tiny-mask's two extra query/key projections (2 x 2 x (128 x 128 + 128) = 66,048 weights) are paid
# for by a narrower FFN: 4 layers x (2 x 128 + 1) x 64 = 65,792 fewer weights at ffn_dim 192.
VARIANTS: tuple[Variant, ...] = (
    Variant(REFERENCE, "ARM (tiny-arm), masking distillation, paper reuse", ()),
    Variant("all_attention", "all-attention student (tiny-mask, ffn 192)",
            ("distill.student.preset=tiny-mask", "distill.student.ffn_dim=192")),
    Variant("layer_objective", "plain layer-to-layer distillation", LAYER_OBJECTIVE),
    Variant("release_reuse", "release reuse maths", ("distill.student.reuse_mode=release",)),
    Variant("raw_targets", "masking distillation, raw targets (target_norm none)", RAW_TARGETS),
    Variant("layer_objective_raw", "layer-to-layer, raw targets (target_norm none)", LAYER_OBJECTIVE + RAW_TARGETS,
            against="layer_objective"),
    Variant("mask_prob_04", "mask prob 0.4 (the release's 100 h runs)", ("distill.mask.mask_prob=0.4",)),
    # What `armdistill analyze-attention` suggests for the shipped teacher's mapped layers with tiny-arm's two
    # computing layers (benchmarks/results/attention_default_teacher/demo_layers; scripts/analyze_default_teacher.py).
    Variant("suggested_pattern", "reuse pattern suggested by analyze-attention",
            ("distill.student.reuse_pattern=[true, false, true, false]",)),
)


def selected(keys: list[str] | None) -> tuple[Variant, ...]:
    """The variants named by ``ablation.variants`` (None: all), the reference and, in turn, those
    they are compared against."""
    by_key = {v.key: v for v in VARIANTS}
    unknown = sorted(set(keys or []) - set(by_key))
    if unknown:
        raise ConfigError(expected("ablation.variants", f"variant keys of {list(by_key)}", unknown[0]))
    wanted = set(by_key) if keys is None else {REFERENCE, *keys}
    while not {by_key[k].against for k in wanted} <= wanted:
        wanted |= {by_key[k].against for k in wanted}
    return tuple(v for v in VARIANTS if v.key in wanted)


def variant_config(base: DemoConfig, variant: Variant, seed: int, steps: int | None = None) -> DemoConfig:
    """The base demo with the variant's overrides, ``seed`` for recipe and probe and ``steps`` (None: the file's)."""
    schedule = [] if steps is None else [f"distill.trainer.max_steps={steps}"]
    data = apply_overrides(to_dict(base), [*variant.overrides, *schedule, f"distill.seed={seed}",
                                           f"probe.settings.seed={seed}"])
    return from_dict(DemoConfig, data)


def run_identity(cfg: DemoConfig) -> str:
    """What a run computes: the demo config with the student section replaced by the student it
    resolves to, so that a variant spelling out the preset's own settings (e.g. the reuse pattern
    ``analyze-attention`` suggests, when it is the preset's alternation) is the same run."""
    data = to_dict(cfg)
    data["distill"]["student"] = resolved_dict(cfg.distill)["resolved"]["student"]
    data["distill"]["init_from_teacher"] = cfg.distill.init_from_teacher
    return json.dumps(data, sort_keys=True)


def run_one(cfg: DemoConfig, corpus: Path, manifests: dict[str, Path], out: Path) -> dict[str, Any]:
    """Distil and probe one (variant, schedule, seed); reuses a finished run's results."""
    result_path = out / "result.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    with torch_threads(cfg.threads):
        began, cpu_began = time.perf_counter(), time.process_time()
        student_dir = distill(cfg, corpus, out, resume_unfinished=True)
        trained = time.perf_counter() - began
        student = Student.from_pretrained(student_dir)
        metrics = probe("student", student, manifests, out / "probe", probe_settings(cfg))
    result = {"per": metrics["test"], "valid_per": metrics["valid"], "params": student.num_parameters(),
              "distill_seconds": round(trained, 1), "seconds": round(time.perf_counter() - began, 1),
              "cpu_seconds": round(time.process_time() - cpu_began, 1)}
    result_path.write_text(json.dumps(result, indent=2) + "\n")
    return result


def paired_difference(values: dict[int, float], baseline: dict[int, float]) -> dict[str, Any]:
    """``values[seed] - baseline[seed]`` over the seeds both have: mean, sample sd and the
    two-sided t-interval of the mean (None with fewer than two seeds)."""
    seeds = sorted(set(values) & set(baseline))
    diffs = [values[s] - baseline[s] for s in seeds]
    mean = statistics.mean(diffs) if diffs else None
    sd = statistics.stdev(diffs) if len(diffs) > 1 else None
    interval = None
    if sd is not None:
        half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, len(diffs) - 1)) * sd / math.sqrt(len(diffs))
        interval = [mean - half, mean + half]
    return {"seeds": seeds, "per_seed": diffs, "mean": mean, "sd": sd, "interval": interval, "confidence": CONFIDENCE}


def verdict(diff: dict[str, Any]) -> str:
    """Plain words for a paired PER difference (variant minus baseline; lower PER is better)."""
    if diff["interval"] is None:
        return "too few seeds to say"
    low, high = diff["interval"]
    if low > 0:
        return "worse"
    if high < 0:
        return "better"
    return "no measurable difference"


def summarise(rows: list[dict[str, Any]], steps: list[int]) -> None:
    """Add to each row and schedule the PER mean / sd and the paired difference against its baseline
    (a row whose runs are another variant's, ``same_runs_as``, says so instead of a verdict)."""
    by_key = {row["key"]: row for row in rows}
    for row in rows:
        for n in steps:
            entry = row["schedules"][str(n)]
            pers = {r["seed"]: r["per"] for r in entry["runs"]}
            entry["per_mean"] = statistics.mean(pers.values())
            entry["per_sd"] = statistics.stdev(pers.values()) if len(pers) > 1 else None
            if row["key"] != row["against"]:
                base = {r["seed"]: r["per"] for r in by_key[row["against"]]["schedules"][str(n)]["runs"]}
                entry["difference"] = paired_difference(pers, base)
                same = row.get("same_runs_as")
                entry["verdict"] = f"same runs as {same}" if same else verdict(entry["difference"])
        # the same variant and seed from N to the longer schedules: is it still moving?
        first = {r["seed"]: r["per"] for r in row["schedules"][str(steps[0])]["runs"]}
        row["longer_minus_first"] = {
            str(n): paired_difference({r["seed"]: r["per"] for r in row["schedules"][str(n)]["runs"]}, first)
            for n in steps[1:]
        }


def _fmt(value: float | None, signed: bool = False) -> str:
    return "-" if value is None else (f"{value:+.3f}" if signed else f"{value:.3f}")


def _difference_cells(entry: dict[str, Any], against: str) -> str:
    diff = entry.get("difference")
    if diff is None:
        return "- | - | -"
    low, high = diff["interval"] or (None, None)
    return (f"{_fmt(diff['mean'], True)} +- {_fmt(diff['sd'])} vs {against} | [{_fmt(low, True)}, {_fmt(high, True)}] | "
            f"{entry['verdict']}")


def table(rows: list[dict[str, Any]], teacher_per: float, seeds: list[int], steps: list[int]) -> str:
    """Markdown: per schedule, one row per variant: PER mean +- sd over seeds, per-seed values and
    the paired difference against its baseline with its 95% t-interval."""
    lines = []
    for n in steps:
        lines += [
            f"**{n} steps**, seeds {seeds}\n",
            "| variant | params (backbone + heads) | test PER, mean +- sd | per seed | paired difference, mean +- sd "
            "| 95% interval | verdict | distill s/run (cpu s) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in rows:
            entry = row["schedules"][str(n)]
            runs = entry["runs"]
            p = runs[0]["params"]
            wall = statistics.mean(r["distill_seconds"] for r in runs)
            cpu = statistics.mean(r.get("cpu_seconds", float("nan")) for r in runs)
            per_seed = ", ".join(f"{r['per']:.3f}" for r in runs)
            lines.append(
                f"| {row['label']} | {p['params_backbone']:,} + {p['params_heads']:,} | {_fmt(entry['per_mean'])} +- "
                f"{_fmt(entry['per_sd'])} | {per_seed} | "
                f"{_difference_cells(entry, row['against'])} | {wall:.0f} ({cpu:.0f}) |"
            )
        lines.append(f"| teacher (same probe) | - | {teacher_per:.3f} | - | - | - | - | - |\n")
    for row in rows:
        for n, diff in row["longer_minus_first"].items():
            low, high = diff["interval"] or (None, None)
            lines.append(f"- {row['key']}: PER at {n} minus at {steps[0]} steps: {_fmt(diff['mean'], True)} "
                         f"+- {_fmt(diff['sd'])}, 95% interval [{_fmt(low, True)}, {_fmt(high, True)}]")
    return "\n".join(lines) + "\n"


def run_ablation(base: DemoConfig, out: str | Path, seeds: list[int]) -> str:
    """Run every selected variant for every schedule and seed; writes ``ablation.json`` and ``ablation.md``."""
    out = Path(out)
    variants = selected(base.ablation.variants)
    steps = list(base.ablation.steps)
    began = time.perf_counter()
    corpus = synthesise(base)
    manifests = probe_manifests(base, corpus, out)
    teacher_metrics = out / "teacher" / "metrics.json"
    if teacher_metrics.is_file():
        teacher = json.loads(teacher_metrics.read_text())
    else:
        with torch_threads(base.threads):
            teacher = probe("teacher", f"teacher:{teacher_source(base)}", manifests, out / "teacher", probe_settings(base))
    # seed by seed, so that a stopped ablation leaves complete pairs; a variant that resolves to a
    # run already listed shares it instead of repeating it
    jobs: dict[tuple[str, int, int], tuple[DemoConfig, Path]] = {}
    shared: dict[tuple[str, int, int], tuple[str, int, int]] = {}
    first_of: dict[str, tuple[str, int, int]] = {}
    for seed in seeds:
        for n in steps:
            for v in variants:
                cfg = variant_config(base, v, seed, n)
                job = first_of.setdefault(run_identity(cfg), (v.key, n, seed))
                if job == (v.key, n, seed):
                    jobs[job] = (cfg, out / v.key / f"steps{n}" / f"seed{seed}")
                else:
                    shared[(v.key, n, seed)] = job
    results: dict[tuple[str, int, int], dict[str, Any]] = {}
    # spawn: a fresh interpreter per worker, no forked torch / Lightning state; the console as ours
    with ProcessPoolExecutor(base.ablation.jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=apply_console_state, initargs=(console_state(),)) as pool:
        futures = {pool.submit(run_one, cfg, corpus, manifests, run_dir): job for job, (cfg, run_dir) in jobs.items()}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            key, n, seed = futures[future]
            print(f"[{time.perf_counter() - began:6.0f} s] ablation: {key}, {n} steps, seed {seed}: "
                  f"PER {results[futures[future]]['per']:.3f} ({len(results)}/{len(jobs)})", file=sys.stderr)
    results.update({job: results[source] for job, source in shared.items()})
    same_runs_as = {job[0]: source[0] for job, source in shared.items()}
    rows = [
        {"key": v.key, "label": v.label, "overrides": list(v.overrides), "against": v.against,
         "same_runs_as": same_runs_as.get(v.key),
         "schedules": {str(n): {"runs": [{"seed": s, **results[(v.key, n, s)]} for s in seeds]} for n in steps}}
        for v in variants
    ]
    summarise(rows, steps)
    text = table(rows, teacher["test"], seeds, steps)
    wall = round(time.perf_counter() - began, 1)
    summary = {"seeds": seeds, "steps": steps, "jobs": base.ablation.jobs, "teacher_per": teacher["test"],
               "variants": rows, "wall_seconds": wall, "probe": to_dict(probe_settings(base)),
               "recipe": to_dict(base.distill)}
    (out / "ablation.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "ablation.md").write_text(text + f"\nWall time {wall:.0f} s, {base.ablation.jobs} job(s) at a time.\n")
    return text
