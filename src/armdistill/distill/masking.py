"""Span masks for masking distillation, equal in distribution to the HuBERT / wav2vec 2.0 sampler.

Per row: ``num = max(min_masks, int(mask_prob * frames / mask_length + u))`` spans (``u`` uniform on
[0, 1), probabilistic rounding), span lengths fixed (``static``) or uniform on
``mask_other .. 2 * mask_length`` (``uniform``), then either

* no overlap: spans placed longest first, each into a free interval picked with probability
  proportional to its width among the intervals it fits in (width >= length + min_space), at a
  uniform start; the interval is split around it, keeping ``min_space`` unmasked frames on each side;
  a row stops at its first span that fits nowhere;
* overlap allowed: span starts drawn without replacement, spans clipped to the valid frames.

Finally every row is cut to the smallest masked count of the batch by dropping uniformly chosen
masked frames (``per_row`` keeps each row's own count). The batch is processed row-parallel in
numpy: one vectorised step per span rank, not one Python step per span. All randomness comes
from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from armdistill.checks import check_choice, check_range, check_shape
from armdistill.config import ConfigError
from armdistill.errors import expected


@dataclass
class MaskConfig:
    """Span-mask parameters; the defaults are the release's (p 0.8, span 10, uniform, no overlap)."""

    mask_prob: float = 0.8
    mask_length: int = 10
    selection: Literal["static", "uniform"] = "uniform"
    mask_other: float = 0.0
    min_masks: int = 2
    no_overlap: bool = True
    min_space: int = 1
    per_row: bool = False

    def __post_init__(self) -> None:
        check_range("mask_prob", self.mask_prob, ge=0, le=1)
        check_range("mask_length", self.mask_length, ge=1)
        check_choice("selection", self.selection, ("static", "uniform"))
        other = self.mask_other
        if other != int(other) or not 0 <= other <= 2 * self.mask_length:
            raise ConfigError(
                f"mask_other: expected a whole number in [0, 2 * mask_length = {2 * self.mask_length}], "
                f"got {other!r}"
            )
        check_range("min_masks", self.min_masks, ge=0)
        check_range("min_space", self.min_space, ge=0)


def compute_mask(
    batch: int,
    frames: int,
    lengths: Tensor | None,
    cfg: MaskConfig,
    rng: np.random.Generator,
) -> Tensor:
    """Sample a span mask ``[batch, frames]`` (bool, True = masked), never set at padded frames.

    lengths: valid frames per row ``[batch]`` (None = every row is ``frames`` long; then, as in
    the release, a single span count is drawn for the whole batch).
    """
    sizes = _valid_sizes(batch, frames, lengths)
    num = _num_spans(sizes, frames, lengths is None, cfg, rng)
    span_len, valid = _span_lengths(num, sizes, cfg, rng)
    if cfg.no_overlap:
        starts, placed = _arrange(sizes, span_len, valid, cfg.min_space, rng)
    else:
        starts, placed = _scatter(sizes, span_len, valid, rng)
    mask = _cover(starts, span_len, placed, sizes, frames)
    if not cfg.per_row:
        mask = _cut_to_min(mask, rng)
    return torch.from_numpy(mask)


def masked_fraction(mask: Tensor, padding_mask: Tensor | None = None) -> float:
    """Fraction of valid frames that are masked; mask, padding_mask: ``[batch, frames]`` bool."""
    if padding_mask is None:
        return float(mask.float().mean()) if mask.numel() else 0.0
    check_shape("padding_mask", padding_mask, mask.shape)
    valid = ~padding_mask
    total = int(valid.sum())
    return float((mask & valid).sum()) / total if total else 0.0


def _valid_sizes(batch: int, frames: int, lengths: Tensor | None) -> np.ndarray:
    check_range("compute_mask: batch", batch, ge=1, error=ValueError)
    check_range("compute_mask: frames", frames, ge=1, error=ValueError)
    if lengths is None:
        return np.full(batch, frames, dtype=np.int64)
    sizes = np.asarray(lengths.detach().cpu() if isinstance(lengths, Tensor) else lengths, dtype=np.int64)
    check_shape("compute_mask: lengths", sizes, (batch,))
    if sizes.min() < 1 or sizes.max() > frames:
        raise ValueError(expected("compute_mask: lengths", f"valid frame counts in 1..{frames}", sizes.tolist()))
    return sizes


def _num_spans(
    sizes: np.ndarray, frames: int, shared: bool, cfg: MaskConfig, rng: np.random.Generator
) -> np.ndarray:
    """Spans to attempt per row ``[batch]``: ``mask_prob * size / mask_length`` rounded at random."""
    if shared:
        num = np.full(len(sizes), int(cfg.mask_prob * frames / cfg.mask_length + rng.random()))
    else:
        num = (cfg.mask_prob * sizes / cfg.mask_length + rng.random(len(sizes))).astype(np.int64)
    return np.maximum(num, cfg.min_masks)


def _span_lengths(
    num: np.ndarray, sizes: np.ndarray, cfg: MaskConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Span lengths ``[batch, max_spans]`` sorted longest first, and which entries are real spans."""
    batch, width = len(num), int(num.max())
    valid = np.arange(width)[None, :] < num[:, None]
    if cfg.selection == "static":
        span_len = np.full((batch, width), cfg.mask_length, dtype=np.int64)
    else:
        span_len = rng.integers(int(cfg.mask_other), 2 * cfg.mask_length + 1, size=(batch, width))
    span_len = np.where(valid, span_len, 0)
    # A row whose spans all came out empty still gets one span of the nominal length (as the release).
    empty = (span_len.sum(axis=1) == 0) & (num > 0)
    span_len[empty, 0] = np.minimum(cfg.mask_length, sizes[empty] - 1)
    span_len = -np.sort(-np.where(valid, span_len, -1), axis=1)
    return np.where(valid, span_len, 0), valid


def _arrange(
    sizes: np.ndarray, span_len: np.ndarray, valid: np.ndarray, min_space: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Place non-overlapping spans (longest first) into free intervals; returns starts, placed.

    Free intervals live in slots ``[batch, max_spans + 1]``: placing a span replaces the chosen
    slot by the free part left of it and puts the part right of it into a fresh slot. Slot order
    does not matter: an interval's chance depends only on its width.
    """
    batch, width = span_len.shape
    rows = np.arange(batch)
    # Side intervals are kept by the release's own tests against the row's shortest span; they
    # only matter when min_space is 0 (otherwise a dropped interval could never take a span).
    keep = np.where(valid, span_len, np.iinfo(np.int64).max).min(axis=1)
    part_s = np.zeros((batch, width + 1), dtype=np.int64)
    part_e = np.zeros((batch, width + 1), dtype=np.int64)
    part_e[:, 0] = sizes
    starts = np.zeros((batch, width), dtype=np.int64)
    placed = np.zeros((batch, width), dtype=bool)
    alive = np.ones(batch, dtype=bool)
    for j in range(width):
        length = span_len[:, j]
        part_w = part_e[:, : j + 1] - part_s[:, : j + 1]
        weight = np.where(part_w >= (length + min_space)[:, None], part_w, 0)
        total = weight.sum(axis=1)
        alive &= ~(valid[:, j] & (total == 0))
        act = alive & valid[:, j]
        if not act.any():
            break
        pick = rng.integers(0, np.maximum(total, 1))
        slot = np.minimum((weight.cumsum(axis=1) <= pick[:, None]).sum(axis=1), j)
        s, e = part_s[rows, slot], part_e[rows, slot]
        start = rng.integers(s, np.maximum(e - length, s + 1))
        left = start - s - min_space >= keep
        right = e - start - keep - min_space > keep
        part_s[rows[act], slot[act]] = np.where(left, s, 0)[act]
        part_e[rows[act], slot[act]] = np.where(left, start - min_space + 1, 0)[act]
        part_s[act, j + 1] = np.where(right, start + length + min_space, 0)[act]
        part_e[act, j + 1] = np.where(right, e, 0)[act]
        starts[:, j] = start
        placed[:, j] = act
    return starts, placed


def _scatter(
    sizes: np.ndarray, span_len: np.ndarray, valid: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping spans: starts drawn without replacement from ``size - shortest`` positions."""
    num = valid.sum(axis=1)
    shortest = np.where(valid, span_len, np.iinfo(np.int64).max).min(axis=1)
    shortest = np.where(sizes - shortest <= num, sizes - num - 1, shortest)
    choices = sizes - shortest
    # A uniformly random ordering of each row's candidate starts; its first ``num`` are the draw.
    keys = rng.random((len(sizes), int(choices.max())))
    keys[np.arange(keys.shape[1])[None, :] >= choices[:, None]] = np.inf
    starts = np.argsort(keys, axis=1)[:, : span_len.shape[1]]
    return starts, valid


def _cover(
    starts: np.ndarray, span_len: np.ndarray, placed: np.ndarray, sizes: np.ndarray, frames: int
) -> np.ndarray:
    """Bool mask ``[batch, frames]`` covering the placed spans, clipped to each row's valid frames."""
    batch = len(sizes)
    lo = np.minimum(starts, sizes[:, None])
    hi = np.minimum(starts + span_len, sizes[:, None])
    use = placed & (hi > lo)
    rows = np.broadcast_to(np.arange(batch)[:, None], starts.shape)
    edges = np.zeros((batch, frames + 1), dtype=np.int64)
    np.add.at(edges, (rows[use], lo[use]), 1)
    np.add.at(edges, (rows[use], hi[use]), -1)
    return edges.cumsum(axis=1)[:, :frames] > 0


def _cut_to_min(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Keep a uniformly chosen subset of each row's masked frames, as many as the sparsest row has."""
    counts = mask.sum(axis=1)
    keep = int(counts.min())
    if (counts == keep).all():
        return mask
    out = np.zeros_like(mask)
    if keep == 0:
        return out
    keys = rng.random(mask.shape)
    keys[~mask] = 2.0
    chosen = np.argpartition(keys, keep - 1, axis=1)[:, :keep]
    out[np.arange(len(mask))[:, None], chosen] = True
    return out
