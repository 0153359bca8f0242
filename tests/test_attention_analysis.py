"""``armdistill analyze-attention``: the similarity measure, the exact pattern search, a planted
structure recovered, padding that changes nothing, and the command's files."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from matplotlib.image import imread

from armdistill.cli import main
from armdistill.data.manifest import write_manifest
from armdistill.demo import ablation
from armdistill.demo.config import CONFIG_DIR, load_demo_config
from armdistill.eval.attention_analysis import (
    alternation_pattern,
    analyze,
    best_pattern,
    head_similarity,
    pattern_total,
    row_similarity_sums,
    valid_maps,
)
from armdistill.models.config import preset_config
from armdistill.models.student import Student
from armdistill.teachers import Teacher, make_random_model, make_random_teacher


COMMITTED = Path(__file__).parents[1] / "benchmarks" / "results" / "attention_default_teacher" / "demo_layers"


def noise(seconds: float, seed: int) -> torch.Tensor:
    return 0.1 * torch.randn(int(seconds * 16000), generator=torch.Generator().manual_seed(seed))


def test_similarity_is_one_for_equal_rows_and_zero_for_disjoint_ones():
    eye = torch.eye(4)[None]  # one head, 4 rows, each a point mass
    shifted = eye.roll(1, dims=-1)
    half = torch.full((1, 4, 4), 0.25)
    assert row_similarity_sums(eye, eye).item() == 4.0
    assert row_similarity_sums(eye, shifted).item() == 0.0
    # JSD(point mass, uniform over 4) = H(m) - H(uniform)/2 with m = (5/8, 1/8, 1/8, 1/8)
    m = np.array([5, 1, 1, 1]) / 8
    jsd = -(m * np.log2(m)).sum() - 1.0
    assert row_similarity_sums(eye, half).item() == pytest.approx(4 * (1 - jsd), abs=1e-12)


def test_best_pattern_is_the_exact_optimum():
    gen = torch.Generator().manual_seed(0)
    for n in (1, 4, 7):
        sim = torch.rand(n, n, generator=gen, dtype=torch.float64)
        for k in range(1, n + 1):
            patterns = [[i == 0 or i in rest for i in range(n)] for rest in itertools.combinations(range(1, n), k - 1)]
            best = max(pattern_total(sim, p) for p in patterns)
            found = best_pattern(sim, k)
            assert sum(found) == k and found[0]
            assert pattern_total(sim, found) == pytest.approx(best, abs=1e-12)


def test_alternation_spreads_computing_layers():
    assert alternation_pattern(4, 2) == [True, False, True, False]
    assert alternation_pattern(12, 6) == [True, False] * 6
    assert alternation_pattern(6, 2) == [True, False, False, True, False, False]
    assert alternation_pattern(3, 2) == [True, False, True]


PLANTED = [True, False, False, True, True, False]


@pytest.fixture(scope="module")
def planted_student() -> Student:
    """Reusing layers apply their computing layer's map exactly; sharpened maps keep the others apart."""
    torch.manual_seed(0)
    student = Student.from_preset("tiny-arm", num_layers=6, reuse_pattern=PLANTED, reuse_mode="explicit").eval()
    with torch.no_grad():
        for layer in student.encoder.layers:
            if layer.computes_attention:
                layer.attention.q_proj.weight.mul_(30.0)
    return student


def test_analysis_recovers_a_planted_pattern(planted_student):
    result = analyze(planted_student, [noise(0.7, 1), noise(1.0, 2), noise(0.5, 3)], computing=3, batch=2)
    sim = torch.tensor(result["similarity"])
    assert sim[0, 1] == sim[0, 2] == sim[4, 5] == 1.0
    assert sim[0, 3] < 0.99 and sim[3, 4] < 0.99
    assert result["suggested_pattern"] == PLANTED
    assert result["suggested_total"] == 3.0
    assert result["alternation_pattern"] == [True, False] * 3
    assert result["alternation_total"] < result["suggested_total"] - 0.01
    assert len(result["head_similarity"][0][0]) == planted_student.config.num_heads


@pytest.mark.parametrize("kind", ["teacher", "student"])
def test_padding_does_not_change_an_utterances_similarity(kind, planted_student):
    model = Teacher(make_random_model("hubert", num_hidden_layers=3)) if kind == "teacher" else planted_student
    short, long = noise(0.6, 4), noise(1.1, 5)
    alone = valid_maps(model, [short])[0]
    padded = valid_maps(model, [short, long])[0]
    assert [m.shape for m in padded] == [m.shape for m in alone]
    for a, b in zip(alone, padded):
        torch.testing.assert_close(b, a, atol=2e-6, rtol=0)
    torch.testing.assert_close(head_similarity([padded]), head_similarity([alone]), atol=1e-6, rtol=0)
    if kind == "teacher":  # maps come from the eager path; the model's own path is restored
        assert model.model.config._attn_implementation == "sdpa"


def test_analyze_attention_command(tmp_path, capsys):
    teacher = make_random_teacher(tmp_path / "teacher", num_hidden_layers=4)
    rows = []
    for i, seconds in enumerate([0.8, 0.5, 1.2]):
        sf.write(tmp_path / f"u{i}.wav", noise(seconds, i).numpy(), 16000)
        rows.append((f"u{i}.wav", int(seconds * 16000)))
    write_manifest(tmp_path / "data.tsv", tmp_path, rows)
    out = tmp_path / "analysis"
    argv = ["analyze-attention", str(teacher), "--data", str(tmp_path / "data.tsv"), "--utterances", "2",
            "--layers", "1", "2", "3", "--computing", "2", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "analysis.json").read_text())
    assert result["layers"] == [1, 2, 3] and result["utterances"] == 2 and result["computing"] == 2
    assert len(result["similarity"]) == 3 and sum(result["suggested_pattern"]) == 2
    assert result["alternation_pattern"] == [True, False, True]
    sim = torch.tensor(result["similarity"])
    assert result["suggested_total"] == pytest.approx(pattern_total(sim, result["suggested_pattern"]))
    assert result["suggested_total"] >= result["alternation_total"]
    assert f"reuse_pattern: {json.dumps(result['suggested_pattern'])}" in printed
    assert imread(out / "similarity.png").ndim == 3
    assert main([*argv[:-2], "--layers", "1", "4", "--out", str(tmp_path / "bad")]) == 2
    assert "--layers" in capsys.readouterr().err


def test_ablation_variant_takes_the_committed_suggestion():
    """scripts/analyze_default_teacher.py wrote the suggestion for the ablation's mapped layers and K."""
    analysis = json.loads((COMMITTED / "analysis.json").read_text())
    base = load_demo_config(CONFIG_DIR / "demo-ablation.yaml")
    variant = next(v for v in ablation.VARIANTS if v.key == "suggested_pattern")
    student = ablation.variant_config(base, variant, seed=0).distill.student
    assert student["reuse_pattern"] == analysis["suggested_pattern"]
    assert analysis["layers"] == base.distill.loss.layer_map
    assert analysis["computing"] == sum(preset_config(student["preset"]).reuse_pattern)
