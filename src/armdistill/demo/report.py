"""``report.json`` and ``report.md``: test PER per upstream, checks, settings, sizes and times.

Every PER in the report is the ``test`` value of that upstream's ``probes/<name>/metrics.json``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from armdistill.config import to_dict
from armdistill.data.manifest import read_manifest
from armdistill.demo.config import DemoConfig
from armdistill.demo.stages import UPSTREAMS, Timer
from armdistill.distill.export import INFO_NAME
from armdistill.eval.upstream import StudentUpstream, TeacherUpstream, Upstream
from armdistill.frames import SAMPLE_RATE


def _minutes(manifest: Path) -> float:
    return round(sum(read_manifest(manifest).num_samples) / SAMPLE_RATE / 60.0, 2)


def sizes(teacher: TeacherUpstream, student: StudentUpstream) -> dict[str, dict[str, int]]:
    """Parameter counts of the teacher and the student (with and without heads)."""
    return {
        "teacher": {"params_total": sum(p.numel() for p in teacher.teacher.model.parameters())},
        "student": student.student.num_parameters(),
    }


def checks(per: Mapping[str, float], margin: float) -> dict[str, Any]:
    """The demo's claims: the distilled student beats its untrained self and MFCC, and is close to the teacher."""
    gap = per["student"] - per["teacher"]
    return {
        "student_below_untrained": per["student"] < per["student_untrained"],
        "student_below_mfcc": per["student"] < per["mfcc"],
        "student_minus_teacher": round(gap, 4),
        "teacher_margin": margin,
        "within_teacher_margin": gap <= margin,
    }


def build(cfg: DemoConfig, out: Path, results: Mapping[str, dict[str, Any]], models: Mapping[str, Upstream],
          student_dir: Path, manifests: Mapping[str, Path], figures: Mapping[str, str], timer: Timer,
          load_before: tuple[float, float, float], load_after: tuple[float, float, float]) -> dict[str, Any]:
    per = {name: results[name]["test"] for name in UPSTREAMS}
    distill_info = json.loads((student_dir / INFO_NAME).read_text())
    settings = results["teacher"]["config"]
    return {
        "name": cfg.name,
        "per": per,
        "valid_per": {name: results[name]["valid"] for name in UPSTREAMS},
        "checks": checks(per, cfg.teacher_margin),
        "wall_seconds": round(timer.elapsed(), 2),
        "stage_seconds": dict(timer.stages),
        "cpu": {"cores": os.cpu_count(), "torch_threads": cfg.threads, "load_average_before": [round(v, 2) for v in load_before],
                "load_average_after": [round(v, 2) for v in load_after]},
        "probe": {
            "task": "pr", "head": "linear CTC on a learned softmax-weighted sum of layer-normed layers",
            "student_features": settings["student_features"], "train_minutes": _minutes(manifests["train"]),
            "utterances": results["teacher"]["num_utterances"], "settings": settings,
            "epochs_run": {name: results[name]["epochs_run"] for name in UPSTREAMS},
            "best_epoch": {name: results[name]["best_epoch"] for name in UPSTREAMS},
            "layer_weights": {name: dict(zip(results[name]["layer_names"], [round(w, 3) for w in results[name]["layer_weights"]]))
                              for name in UPSTREAMS},
        },
        "distill": {"steps": distill_info["global_step"], "student_dir": str(student_dir),
                    "objective": distill_info["config"]["loss"]["objective"],
                    "target_norm": distill_info["config"]["loss"]["target_norm"],  # resolved against the teacher
                    "student": distill_info["config"]["resolved"]["student"], "recipe": to_dict(cfg.distill)},
        "params": sizes(models["teacher"], models["student"]),
        "metrics_files": {name: str(out / "probes" / name / "metrics.json") for name in UPSTREAMS},
        "figures": dict(figures),
        "corpus": {"minutes": cfg.corpus.minutes, "seed": cfg.corpus.seed,
                   "minutes_per_split": {k: _minutes(v) for k, v in manifests.items()}},
    }


def markdown(data: Mapping[str, Any]) -> str:
    per, chk, probe, params = data["per"], data["checks"], data["probe"], data["params"]
    s = probe["settings"]
    student = params["student"]
    lines = [
        f"# armdistill demo report ({data['name']})",
        "",
        f"Wall time {data['wall_seconds']:.0f} s on {data['cpu']['cores']} CPU cores, "
        f"{data['cpu']['torch_threads'] or 'default'} torch thread(s) "
        f"(load average before {data['cpu']['load_average_before'][0]}, after {data['cpu']['load_average_after'][0]}); "
        "stages: " + ", ".join(f"{k} {v:.0f} s" for k, v in data["stage_seconds"].items()) + ".",
        "",
        "## Phone recognition (test split: held-out speakers and sentences)",
        "",
        "| upstream | test PER | valid PER | best epoch |",
        "|---|---|---|---|",
    ]
    lines += [f"| {name} | {per[name]:.3f} | {data['valid_per'][name]:.3f} | {probe['best_epoch'][name]} |" for name in UPSTREAMS]
    lines += [
        "",
        f"- distilled student below its untrained self: {_yes(chk['student_below_untrained'])}; "
        f"below MFCC: {_yes(chk['student_below_mfcc'])}",
        f"- distilled student minus teacher: {chk['student_minus_teacher']:+.3f} PER "
        f"(margin {chk['teacher_margin']}: {'within' if chk['within_teacher_margin'] else 'outside'})",
        "",
        "## Settings",
        "",
        f"- Probe (same for every upstream): {probe['head']}; frozen features, student `{probe['student_features']}` "
        f"features; lr {s['lr']}, batch {s['batch_size']}, {s['min_epochs']}-{s['epochs']} epochs "
        f"(patience {s['patience']}), best epoch by validation PER; trained on {probe['train_minutes']} min "
        f"({probe['utterances']['train']} utterances) of the train split.",
        f"- Distillation: {data['distill']['steps']} optimiser steps, objective `{data['distill']['objective']}`, "
        f"targets `{data['distill']['target_norm']}`, "
        f"student `{data['distill']['recipe']['student']['preset']}` "
        f"({data['distill']['student']['reuse_mode']} reuse), "
        f"{student['params_backbone']:,} parameters + {student['params_heads']:,} in heads; "
        f"teacher {params['teacher']['params_total']:,} parameters.",
        f"- Corpus: `armdistill synth --minutes {data['corpus']['minutes']:g} --seed {data['corpus']['seed']}`, "
        "minutes per split used: " + ", ".join(f"{k} {v}" for k, v in data["corpus"]["minutes_per_split"].items()) + ".",
        "",
        "## Figures",
        "",
    ]
    lines += [f"![{name}]({file})" for name, file in data["figures"].items()]
    return "\n".join(lines) + "\n"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def write(out: Path, data: Mapping[str, Any]) -> None:
    (out / "report.json").write_text(json.dumps(data, indent=2) + "\n")
    (out / "report.md").write_text(markdown(data))
