"""Distillation losses: routing of masked/unmasked frames, layer map, weights, padding,
release normalisation, gradients and the DistilHuBERT objective."""

from __future__ import annotations

import math

import pytest
import torch

from armdistill.config import ConfigError, from_dict
from armdistill.distill.losses import (
    LossConfig,
    distilhubert_loss,
    layer_distillation_loss,
    masking_distillation_loss,
)

B, T, D, LAYERS = 2, 6, 4, 4


def _constant_layers(values: list[float], batch: int = B, frames: int = T) -> list[torch.Tensor]:
    return [torch.full((batch, frames, D), v) for v in values]


def _example_mask() -> tuple[torch.Tensor, torch.Tensor]:
    """mask and padding ``[2, 6]``: row 0 all valid, row 1 has 4 valid frames; 4 masked valid frames."""
    mask = torch.tensor([[1, 1, 0, 0, 1, 0], [0, 1, 0, 0, 0, 0]], dtype=torch.bool)
    pad = torch.arange(T)[None, :] >= torch.tensor([[6], [4]])
    return mask, pad


def test_routing_layers_and_weights_give_the_predicted_value() -> None:
    # Student outputs 0; unmasked teacher layer l is 1 + l, masked teacher layer l is 10 * (1 + l):
    # each per-frame MSE is the square of the target picked, so every routing error shows.
    student = _constant_layers([0.0] * 3)
    unmasked = _constant_layers([1.0, 2.0, 3.0, 4.0])
    masked = _constant_layers([10.0, 20.0, 30.0, 40.0])
    mask, pad = _example_mask()
    m, u, n = 4, 6, 10  # masked valid, unmasked valid, valid frames
    out = masking_distillation_loss(student, masked, unmasked, mask, pad, LossConfig())
    expected = {
        "mask_hint": m * (1 + 4) / n,
        "mask_rec": m * 9 / n,
        "unmask_hint": u * (100 + 400) / n,
        "unmask_rec": u * 900 / n,
    }
    assert out.num_frames == n
    assert {k: float(v) for k, v in out.terms.items()} == pytest.approx(expected, rel=1e-6)
    hint = expected["mask_hint"] + expected["unmask_hint"]
    rec = expected["mask_rec"] + expected["unmask_rec"]
    assert float(out.loss) == pytest.approx(0.1 * hint + rec, rel=1e-6)

    mapped = masking_distillation_loss(student, masked, unmasked, mask, pad, LossConfig(layer_map=[3, 0, 1]))
    assert float(mapped.terms["mask_hint"]) == pytest.approx(m * (16 + 1) / n, rel=1e-6)
    assert float(mapped.terms["unmask_rec"]) == pytest.approx(u * 400 / n, rel=1e-6)

    l1 = masking_distillation_loss(student, masked, unmasked, mask, pad, LossConfig(kind="l1", hint_weight=0.5))
    assert float(l1.loss) == pytest.approx(0.5 * (m * 3 + u * 30) / n + (m * 3 + u * 30) / n, rel=1e-6)


def test_matches_a_frame_by_frame_reference_on_random_data() -> None:
    torch.manual_seed(0)
    student = [torch.randn(B, T, D) for _ in range(3)]
    masked = [torch.randn(B, T, D) for _ in range(LAYERS)]
    unmasked = [torch.randn(B, T, D) for _ in range(LAYERS)]
    mask, pad = _example_mask()
    cfg = LossConfig(layer_map=[2, 1, 3], hint_weight=0.3)
    total = 0.0
    for k, t_layer in enumerate(cfg.layer_map):
        weight = cfg.rec_weight if k == 2 else cfg.hint_weight
        for b in range(B):
            for t in range(T):
                if pad[b, t]:
                    continue
                target = unmasked[t_layer][b, t] if mask[b, t] else masked[t_layer][b, t]
                total += weight * float(((student[k][b, t] - target) ** 2).mean()) / 10
    out = masking_distillation_loss(student, masked, unmasked, mask, pad, cfg)
    assert float(out.loss) == pytest.approx(total, rel=1e-5)


def test_padding_with_garbage_changes_nothing() -> None:
    torch.manual_seed(1)
    student = [torch.randn(B, T, D) for _ in range(3)]
    masked = [torch.randn(B, T, D) for _ in range(LAYERS)]
    unmasked = [torch.randn(B, T, D) for _ in range(LAYERS)]
    mask, pad = _example_mask()
    mask = mask & ~pad
    extra = 5

    def widen(x: torch.Tensor) -> torch.Tensor:
        wide = 1e3 * torch.randn(B, T + extra, D)
        wide[:, :T] = x
        wide[1, 4:T] = 1e3 * torch.randn(T - 4, D)  # garbage also in row 1's existing padding
        return wide

    wide_pad = torch.arange(T + extra)[None, :] >= torch.tensor([[6], [4]])
    wide_mask = torch.cat([mask, torch.rand(B, extra) > 0.5], dim=1)  # even a mask in padding is ignored
    cfg = LossConfig()
    ref = masking_distillation_loss(student, masked, unmasked, mask, pad, cfg)
    wide_student, wide_masked, wide_unmasked = ([widen(x) for x in xs] for xs in (student, masked, unmasked))
    out = masking_distillation_loss(wide_student, wide_masked, wide_unmasked, wide_mask, wide_pad, cfg)
    assert out.num_frames == ref.num_frames == 10
    assert float(out.loss) == pytest.approx(float(ref.loss), rel=1e-6)
    for name in ref.terms:
        assert float(out.terms[name]) == pytest.approx(float(ref.terms[name]), rel=1e-6)
    base = layer_distillation_loss(student, unmasked, pad, cfg)
    wide = layer_distillation_loss(wide_student, wide_unmasked, wide_pad, cfg)
    assert float(wide.loss) == pytest.approx(float(base.loss), rel=1e-6)


def test_release_compat_counts_padding_and_divides_by_batch_times_frames() -> None:
    # Padded frames: student 0 vs the masked teacher (constant c), so each adds c**2 per layer.
    student = _constant_layers([0.0] * 3)
    unmasked = _constant_layers([1.0, 2.0, 3.0, 4.0])
    masked = _constant_layers([10.0, 20.0, 30.0, 40.0])
    mask, pad = _example_mask()
    default = masking_distillation_loss(student, masked, unmasked, mask, pad, LossConfig())
    compat = masking_distillation_loss(student, masked, unmasked, mask, pad, LossConfig(release_compat=True))
    padded, valid, full = 2, 10, B * T
    assert compat.num_frames == full
    expected_mask_rec = float(default.terms["mask_rec"]) * valid / full
    assert float(compat.terms["mask_rec"]) == pytest.approx(expected_mask_rec, rel=1e-6)
    expected_unmask_hint = (float(default.terms["unmask_hint"]) * valid + padded * (100 + 400)) / full
    assert float(compat.terms["unmask_hint"]) == pytest.approx(expected_unmask_hint, rel=1e-6)
    no_pad = masking_distillation_loss(student, masked, unmasked, mask, None, LossConfig())
    assert float(compat.loss) == pytest.approx(float(no_pad.loss), rel=1e-6)


def test_gradients_reach_student_valid_frames_only() -> None:
    torch.manual_seed(2)
    student = [torch.randn(B, T, D, requires_grad=True) for _ in range(3)]
    masked = [torch.randn(B, T, D, requires_grad=True) for _ in range(LAYERS)]
    unmasked = [torch.randn(B, T, D, requires_grad=True) for _ in range(LAYERS)]
    mask, pad = _example_mask()
    out = masking_distillation_loss(student, masked, unmasked, mask, pad, LossConfig())
    out.loss.backward()
    assert all(x.grad is None for x in masked + unmasked)
    assert all(not v.requires_grad for v in out.terms.values())
    for x in student:
        assert x.grad[~pad].abs().min() > 0
        assert torch.count_nonzero(x.grad[pad]) == 0
    compat = masking_distillation_loss(student, masked, unmasked, mask, pad, LossConfig(release_compat=True))
    grads = torch.autograd.grad(compat.loss, student[0])[0]
    assert torch.count_nonzero(grads[pad]) > 0


def test_plain_layer_distillation_equals_masking_loss_without_mask() -> None:
    torch.manual_seed(3)
    student = [torch.randn(B, T, D) for _ in range(3)]
    teacher = [torch.randn(B, T, D) for _ in range(LAYERS)]
    _, pad = _example_mask()
    cfg = LossConfig(layer_map=[1, 2, 3])
    plain = layer_distillation_loss(student, teacher, pad, cfg)
    junk = [torch.randn(B, T, D) for _ in range(LAYERS)]
    nomask = torch.zeros(B, T, dtype=torch.bool)
    as_masking = masking_distillation_loss(student, teacher, junk, nomask, pad, cfg)
    assert float(plain.loss) == pytest.approx(float(as_masking.loss), rel=1e-6)
    assert float(plain.terms["hint"]) == pytest.approx(float(as_masking.terms["unmask_hint"]), rel=1e-6)
    assert float(plain.terms["rec"]) == pytest.approx(float(as_masking.terms["unmask_rec"]), rel=1e-6)


def test_distilhubert_loss_matches_its_formula() -> None:
    torch.manual_seed(4)
    preds = [torch.randn(B, T, D) for _ in range(3)]
    targets = [torch.randn(B, T, D) for _ in range(3)]
    _, pad = _example_mask()
    expected = 0.0
    for p, t in zip(preds, targets):
        for b in range(B):
            for f in range(T):
                if pad[b, f]:
                    continue
                x, y = p[b, f], t[b, f]
                cos = float(x @ y / (x.norm() * y.norm()))
                expected += (float((x - y).abs().mean()) - 0.5 * math.log(1 / (1 + math.exp(-cos)))) / 10
    out = distilhubert_loss(preds, targets, pad, cos_weight=0.5)
    assert float(out.loss) == pytest.approx(expected, rel=1e-5)
    assert sorted(out.terms) == ["cos_0", "cos_1", "cos_2", "l1_0", "l1_1", "l1_2"]
    assert out.num_frames == 10


def test_masking_loss_decreases_when_fitting_a_student() -> None:
    torch.manual_seed(5)
    features = torch.randn(B, T, 8)
    masked = [torch.randn(B, T, D) for _ in range(2)]
    unmasked = [torch.randn(B, T, D) for _ in range(2)]
    mask, pad = _example_mask()
    heads = [torch.nn.Linear(8, D) for _ in range(2)]
    opt = torch.optim.Adam([p for h in heads for p in h.parameters()], lr=0.05)
    losses = []
    for _ in range(60):
        out = masking_distillation_loss([h(features) for h in heads], masked, unmasked, mask, pad, LossConfig())
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(float(out.loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


def test_bad_inputs_name_the_problem() -> None:
    student = _constant_layers([0.0] * 3)
    teacher = _constant_layers([1.0] * LAYERS)
    mask, pad = _example_mask()
    with pytest.raises(ValueError, match="layer_map has 2 entries for 3"):
        masking_distillation_loss(student, teacher, teacher, mask, pad, LossConfig(layer_map=[0, 1]))
    with pytest.raises(ValueError, match="layer 7"):
        masking_distillation_loss(student, teacher, teacher, mask, pad, LossConfig(layer_map=[0, 1, 7]))
    short = _constant_layers([1.0] * LAYERS, frames=T - 1)
    with pytest.raises(ValueError, match="teacher_masked"):
        masking_distillation_loss(student, short, teacher, mask, pad, LossConfig())
    with pytest.raises(ConfigError, match="kind"):
        from_dict(LossConfig, {"kind": "huber"})
    with pytest.raises(ConfigError, match="hint_weight"):
        LossConfig(hint_weight=-1.0)
