"""Attention analysis of the shipped teacher (``armdistill.DEFAULT_TEACHER``) on the demo's corpus.

Writes OUT/demo_layers/ (the teacher layers the demo student learns, configs/demo.yaml's
loss.layer_map, with as many computing layers as tiny-arm has: the pattern the ablation's
``suggested_pattern`` variant takes) and OUT/all_layers/ (every layer, half of them computing).
Rerun it when the shipped teacher changes; tests/test_attention_analysis.py checks that the
ablation variant still takes the committed suggestion.

    python scripts/analyze_default_teacher.py [OUT]     (default benchmarks/results/attention_default_teacher)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

import armdistill
from armdistill.cli import main as cli
from armdistill.demo.config import default_config_path, load_demo_config
from armdistill.demo.pipeline import synthesise
from armdistill.models.config import preset_config

UTTERANCES = 100  # the whole test split (76 utterances, 6 held-out speakers)
REPO = Path(__file__).resolve().parents[1]


def run(out: Path) -> None:
    """Runs from the repository root, so the results name the teacher by its path in the repository."""
    torch.set_num_threads(1)
    os.chdir(REPO)
    demo = load_demo_config(default_config_path())
    test = synthesise(demo) / "test.tsv"
    layers = demo.distill.loss.layer_map
    computing = sum(preset_config(demo.distill.student["preset"]).reuse_pattern)
    common = [os.path.relpath(armdistill.DEFAULT_TEACHER), "--data", str(test), "--utterances", str(UTTERANCES)]
    for extra, name in [(["--layers", *map(str, layers), "--computing", str(computing)], "demo_layers"),
                        ([], "all_layers")]:
        code = cli(["analyze-attention", *common, *extra, "--out", str(out / name)])
        if code:
            raise SystemExit(code)


if __name__ == "__main__":
    run(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else REPO / "benchmarks" / "results" / "attention_default_teacher")
