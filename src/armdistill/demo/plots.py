"""Demo figures: training curves, PER bars and teacher vs student attention maps.

Matplotlib's Agg canvas, as in eval/plots.py: no display and no global backend change.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor, nn

from armdistill.eval.attention_analysis import attention_maps
from armdistill.models.student import Student


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def read_logged(log_dir: str | Path, key: str) -> dict[int, float]:
    """``step -> value`` of one metric from Lightning CSV logs (``version_*/metrics.csv``; later versions win)."""
    values: dict[int, float] = {}
    paths = sorted(Path(log_dir).glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[-1]))
    for path in paths:
        with path.open() as f:
            for row in csv.DictReader(f):
                if row.get(key):
                    values[int(row["step"])] = float(row[key])
    return values


def plot_curves(distill_logs: Path, probes: Mapping[str, dict[str, Any]], path: Path) -> Path:
    """Left: distillation loss (train per logged step, validation) vs optimiser step.
    Right: each probe's validation PER vs epoch."""
    fig = _figure(10.0, 3.6)
    left, right = fig.subplots(1, 2)
    for key, style in (("train/loss", "-"), ("val/loss", "o-")):
        values = read_logged(distill_logs, key)
        if values:
            steps = sorted(values)
            left.plot(steps, [values[s] for s in steps], style, label=key, markersize=4)
    left.set_xlabel("optimiser step")
    left.set_ylabel("distillation loss")
    left.set_yscale("log")
    left.set_title("distillation", fontsize=9)
    left.legend(fontsize=8)
    for name, result in probes.items():
        history = result["history"]
        right.plot([h["epoch"] for h in history], [h["valid_per"] for h in history], label=name)
    right.set_xlabel("probe epoch")
    right.set_ylabel("validation PER")
    right.set_title("phone-recognition probes", fontsize=9)
    right.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    return path


def plot_per(per: Mapping[str, float], path: Path, title: str = "test PER (lower is better)") -> Path:
    """One bar per upstream, labelled with its value."""
    fig = _figure(max(4.0, 1.1 * len(per) + 1.5), 3.4)
    ax = fig.add_subplot()
    names = list(per)
    bars = ax.bar(range(len(names)), [per[n] for n in names], color="tab:blue")
    ax.bar_label(bars, labels=[f"{per[n]:.3f}" for n in names], fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("PER")
    ax.set_ylim(0, max(1.0, max(per.values()) * 1.15))
    ax.set_title(title, fontsize=9)
    fig.savefig(path, dpi=110)
    return path


def plot_attention(rows: Mapping[str, Sequence[Tensor]], path: Path, title: str) -> Path:
    """One row per model, one panel per layer: the head-averaged map (query frame x key frame)."""
    cols = max(len(maps) for maps in rows.values())
    fig = _figure(1.9 * cols + 0.6, 2.1 * len(rows) + 0.4)
    axes = fig.subplots(len(rows), cols, squeeze=False)
    for r, (name, maps) in enumerate(rows.items()):
        for c in range(cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(maps):
                ax.axis("off")
                continue
            ax.imshow(maps[c].float().mean(dim=0).numpy(), cmap="viridis", aspect="auto", interpolation="nearest")
            ax.set_title(f"{name} layer {c + 1}", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=100)
    return path


def write_all(out: Path, probes: Mapping[str, dict[str, Any]], teacher: nn.Module, student: Student, wav: Tensor,
              utterance: str) -> dict[str, str]:
    """Every demo figure under ``out``; returns ``{figure: file name}``."""
    per = {name: result["test"] for name, result in probes.items()}
    rows = {"teacher": [a[0] for a in attention_maps(teacher, wav[None].float())],
            f"student ({student.config.reuse_mode})": [a[0] for a in attention_maps(student, wav[None].float())]}
    paths = {
        "curves": plot_curves(out / "distill" / "logs" / "csv", probes, out / "curves.png"),
        "per": plot_per(per, out / "per.png"),
        "attention": plot_attention(rows, out / "attention.png", f"head-averaged attention maps, test utterance {utterance}"),
    }
    return {name: path.name for name, path in paths.items()}
