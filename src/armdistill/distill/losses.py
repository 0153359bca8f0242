"""Distillation losses: masking distillation, plain layer-to-layer distillation, DistilHuBERT.

Every per-frame distance is averaged over the feature dim; padded frames are excluded and each
term is divided by the micro-batch's valid frame count, so a loss does not depend on padding.
``release_compat`` instead reproduces the release: padded frames included, divided by
``batch * frames``. Teacher tensors are treated as constants (detached).
:func:`normalize_targets` turns teacher layer outputs into targets (``loss.target_norm``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from armdistill.checks import check_choice, check_range, check_shape
from armdistill.config import ConfigError
from armdistill.errors import expected
from armdistill.frames import masked_group_norm

TargetNorm = Literal["none", "layer", "instance"]
TARGET_NORMS: tuple[str, ...] = get_args(TargetNorm)
# F.layer_norm's and F.instance_norm's default epsilon, as data2vec uses them
TARGET_NORM_EPS = 1e-5


@dataclass
class LossConfig:
    """kind: per-frame distance; hint_weight: weight of every student layer but the last;
    rec_weight: weight of the last student layer; layer_map[k]: teacher layer (0-based) that
    student layer k learns (None = the same index)."""

    kind: Literal["mse", "l1"] = "mse"
    hint_weight: float = 0.1
    rec_weight: float = 1.0
    layer_map: list[int] | None = None
    release_compat: bool = False

    def __post_init__(self) -> None:
        check_choice("kind", self.kind, ("mse", "l1"))
        for name in ("hint_weight", "rec_weight"):
            check_range(name, getattr(self, name), ge=0)
        if self.layer_map is not None and any(i < 0 for i in self.layer_map):
            raise ConfigError(f"layer_map: expected teacher layer indices >= 0, got {self.layer_map!r}")


@dataclass
class LossOutput:
    """loss: scalar to minimise; terms: detached scalars per component; num_frames: the
    normaliser (valid frames, or ``batch * frames`` under ``release_compat``)."""

    loss: Tensor
    terms: dict[str, Tensor]
    num_frames: int


def masking_distillation_loss(
    student: Sequence[Tensor],
    teacher_masked: Sequence[Tensor],
    teacher_unmasked: Sequence[Tensor],
    mask: Tensor,
    padding_mask: Tensor | None,
    cfg: LossConfig,
) -> LossOutput:
    """Masked frames learn the unmasked teacher, unmasked frames the masked teacher.

    student[k]: student layer k's head output ``[batch, frames, dim]``; teacher_*: teacher layer
    outputs ``[batch, frames, dim]``; mask, padding_mask: ``[batch, frames]`` bool.
    """
    masked_targets = _select_layers(teacher_masked, len(student), cfg, "teacher_masked")
    unmasked_targets = _select_layers(teacher_unmasked, len(student), cfg, "teacher_unmasked")
    valid, denom = _frame_weights(mask.shape, padding_mask, cfg.release_compat, student)
    mask = mask.to(device=valid.device, dtype=torch.bool)
    names = ("mask_hint", "mask_rec", "unmask_hint", "unmask_rec")
    sums = {name: student[0].new_zeros(()) for name in names}
    for k, pred in enumerate(student):
        group = "rec" if k == len(student) - 1 else "hint"
        check_shape(f"teacher_masked layer for student[{k}]", masked_targets[k], pred.shape)
        check_shape(f"teacher_unmasked layer for student[{k}]", unmasked_targets[k], pred.shape)
        target = torch.where(mask[..., None], unmasked_targets[k], masked_targets[k])
        dist = frame_distance(pred, target, cfg.kind)
        sums[f"mask_{group}"] = sums[f"mask_{group}"] + (dist * (valid & mask)).sum()
        sums[f"unmask_{group}"] = sums[f"unmask_{group}"] + (dist * (valid & ~mask)).sum()
    terms = {name: value / denom for name, value in sums.items()}
    loss = cfg.hint_weight * (terms["mask_hint"] + terms["unmask_hint"]) + cfg.rec_weight * (
        terms["mask_rec"] + terms["unmask_rec"]
    )
    return LossOutput(loss, {name: value.detach() for name, value in terms.items()}, denom)


def layer_distillation_loss(
    student: Sequence[Tensor],
    teacher_unmasked: Sequence[Tensor],
    padding_mask: Tensor | None,
    cfg: LossConfig,
) -> LossOutput:
    """The unmasked baseline: every frame of student layer k learns its (mapped) teacher layer."""
    targets = _select_layers(teacher_unmasked, len(student), cfg, "teacher_unmasked")
    valid, denom = _frame_weights(student[0].shape[:2], padding_mask, cfg.release_compat, student)
    sums = {"hint": student[0].new_zeros(()), "rec": student[0].new_zeros(())}
    for k, pred in enumerate(student):
        group = "rec" if k == len(student) - 1 else "hint"
        check_shape(f"teacher_unmasked layer for student[{k}]", targets[k], pred.shape)
        sums[group] = sums[group] + (frame_distance(pred, targets[k], cfg.kind) * valid).sum()
    terms = {name: value / denom for name, value in sums.items()}
    loss = cfg.hint_weight * terms["hint"] + cfg.rec_weight * terms["rec"]
    return LossOutput(loss, {name: value.detach() for name, value in terms.items()}, denom)


def distilhubert_loss(
    predictions: Sequence[Tensor],
    targets: Sequence[Tensor],
    padding_mask: Tensor | None,
    cos_weight: float = 1.0,
) -> LossOutput:
    """DistilHuBERT: per target, L1 (mean over dim) - cos_weight * log sigmoid(cosine similarity),
    averaged over valid frames, summed over targets. Each ``[batch, frames, dim]``."""
    if len(predictions) != len(targets) or not predictions:
        raise ValueError(f"distilhubert_loss: {len(predictions)} predictions for {len(targets)} targets")
    valid, denom = _frame_weights(predictions[0].shape[:2], padding_mask, False, predictions)
    terms: dict[str, Tensor] = {}
    loss = predictions[0].new_zeros(())
    for i, (pred, target) in enumerate(zip(predictions, targets)):
        check_shape(f"targets[{i}]", target, pred.shape)
        target = target.detach()
        l1 = (frame_distance(pred, target, "l1") * valid).sum() / denom
        cos = F.cosine_similarity(pred.float(), target.float(), dim=-1)
        cos_term = (-F.logsigmoid(cos) * valid).sum() / denom
        loss = loss + l1 + cos_weight * cos_term
        terms[f"l1_{i}"], terms[f"cos_{i}"] = l1.detach(), cos_term.detach()
    return LossOutput(loss, terms, denom)


def normalize_targets(layers: Sequence[Tensor], lengths: Tensor | None, mode: str) -> tuple[Tensor, ...]:
    """Teacher layer outputs ``[batch, frames, dim]`` as the student learns them.

    ``none``: unchanged (the same tensors); ``layer``: each frame to zero mean and unit variance
    over its features (a LayerNorm without weights); ``instance``: each feature to zero mean and
    unit variance over the utterance's valid frames (``lengths`` ``[batch]``; None: all frames),
    data2vec's instance norm, padded frames set to 0. Statistics in float32.
    """
    if mode == "none":
        return tuple(layers)
    if mode == "layer":
        return tuple(F.layer_norm(x.float(), x.shape[-1:], eps=TARGET_NORM_EPS) for x in layers)
    if mode == "instance":
        # a GroupNorm with one channel per group is an instance norm; masked_group_norm skips padding
        norm = nn.GroupNorm(layers[0].shape[-1], layers[0].shape[-1], eps=TARGET_NORM_EPS, affine=False)
        return tuple(masked_group_norm(x.float().transpose(1, 2), lengths, norm).transpose(1, 2) for x in layers)
    raise ValueError(expected("target_norm", f"one of {list(TARGET_NORMS)} (resolve 'auto' against the teacher first)", mode))


def frame_distance(pred: Tensor, target: Tensor, kind: str) -> Tensor:
    """``[batch, frames, dim]`` x2 -> ``[batch, frames]``: squared or absolute error, mean over dim."""
    diff = pred.float() - target.detach().float()
    return (diff.square() if kind == "mse" else diff.abs()).mean(dim=-1)


def _select_layers(teacher: Sequence[Tensor], num_student: int, cfg: LossConfig, name: str) -> list[Tensor]:
    """Teacher layer per student layer, following ``cfg.layer_map`` (identity when None)."""
    layer_map = list(range(num_student)) if cfg.layer_map is None else cfg.layer_map
    if num_student == 0:
        raise ValueError("no student layers given")
    if len(layer_map) != num_student:
        raise ValueError(f"layer_map has {len(layer_map)} entries for {num_student} student layers")
    if max(layer_map) >= len(teacher):
        raise ValueError(
            f"{name}: layer {max(layer_map)} requested, only {len(teacher)} teacher layers given"
        )
    return [teacher[i] for i in layer_map]


def _frame_weights(
    shape: Sequence[int], padding_mask: Tensor | None, release_compat: bool, student: Sequence[Tensor]
) -> tuple[Tensor, int]:
    """Frames that count ``[batch, frames]`` (bool) and the normaliser; checks every shape."""
    batch, frames = int(shape[0]), int(shape[1])
    for k, pred in enumerate(student):
        check_shape(f"student[{k}]", pred, (batch, frames, "dim"))
    device = student[0].device
    if padding_mask is not None:
        check_shape("padding_mask", padding_mask, (batch, frames))
    if release_compat or padding_mask is None:
        return torch.ones(batch, frames, dtype=torch.bool, device=device), batch * frames
    valid = ~padding_mask.to(device)
    return valid, max(int(valid.sum()), 1)
