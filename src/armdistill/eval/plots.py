"""Figures for probe results (matplotlib's Agg canvas: no display, no global backend change)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def plot_layer_weights(weights: Sequence[float], names: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Bar chart of the learned layer weights, one bar per upstream layer; returns the PNG path."""
    if len(weights) != len(names):
        raise ValueError(f"plot_layer_weights: {len(weights)} weights but {len(names)} layer names")
    fig = Figure(figsize=(max(4.0, 0.5 * len(weights) + 2.0), 3.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.bar(range(len(weights)), weights, color="tab:blue")
    ax.axhline(1.0 / len(weights), color="grey", linestyle="--", linewidth=0.8, label="uniform")
    ax.set_xticks(range(len(weights)), names, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("softmax weight")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    path = Path(path)
    fig.savefig(path, dpi=120)
    return path
