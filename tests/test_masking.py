"""Span mask sampler: release-matching fractions, agreement with a row-by-row reference,
determinism, padding, min_masks, no-overlap spacing and the batch cut."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from armdistill.config import ConfigError, from_dict
from armdistill.distill.masking import MaskConfig, compute_mask, masked_fraction


def _runs(row: torch.Tensor) -> list[tuple[int, int]]:
    """(start, length) of each run of True in a 1-D bool tensor."""
    x = np.concatenate([[0], row.numpy().astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(x))
    return [(int(s), int(e - s)) for s, e in zip(edges[::2], edges[1::2])]


def _reference_row(size: int, cfg: MaskConfig, rng: np.random.Generator) -> np.ndarray:
    """One row, one span at a time, as the documented algorithm reads (no batch cut)."""
    num = max(cfg.min_masks, int(cfg.mask_prob * size / cfg.mask_length + rng.random()))
    if cfg.selection == "static":
        lengths = [cfg.mask_length] * num
    else:
        lengths = [int(v) for v in rng.integers(int(cfg.mask_other), 2 * cfg.mask_length + 1, num)]
    if num and sum(lengths) == 0:
        lengths[0] = min(cfg.mask_length, size - 1)
    row = np.zeros(size, dtype=bool)
    if not cfg.no_overlap:
        shortest = min(lengths)
        if size - shortest <= num:
            shortest = size - num - 1
        for start, length in zip(rng.permutation(size - shortest)[:num], lengths):
            row[start : start + length] = True
        return row
    free, keep, gap = [(0, size)], min(lengths), cfg.min_space
    for length in sorted(lengths, reverse=True):
        widths = np.array([e - s if e - s >= length + gap else 0 for s, e in free], dtype=float)
        if widths.sum() == 0:
            break
        s, e = free.pop(int(rng.choice(len(free), p=widths / widths.sum())))
        start = int(rng.integers(s, e - length))
        row[start : start + length] = True
        if start - s - gap >= keep:
            free.append((s, start - gap + 1))
        if e - start - keep - gap > keep:
            free.append((start + length + gap, e))
    return row


def _mean_fraction(rows: int, frames: int, cfg: MaskConfig, seeds: int) -> float:
    lengths = torch.full((rows,), frames)
    fractions = [
        masked_fraction(compute_mask(rows, frames, lengths, cfg, np.random.default_rng(seed))) for seed in range(seeds)
    ]
    return float(np.mean(fractions))


@pytest.mark.parametrize(("prob", "batch_cut", "single_row"), [(0.8, 0.66, 0.78), (0.4, 0.32, 0.40)])
def test_masked_fraction_matches_release(prob: float, batch_cut: float, single_row: float) -> None:
    cfg = MaskConfig(mask_prob=prob)
    assert abs(_mean_fraction(18, 499, cfg, seeds=40) - batch_cut) < 0.03
    assert abs(_mean_fraction(1, 499, cfg, seeds=300) - single_row) < 0.02


@pytest.mark.parametrize(
    "cfg",
    [
        MaskConfig(per_row=True),
        MaskConfig(selection="static", mask_prob=0.5, per_row=True),
        MaskConfig(selection="uniform", mask_other=4, min_space=2, per_row=True),
        MaskConfig(no_overlap=False, selection="static", per_row=True),
        MaskConfig(no_overlap=False, per_row=True),
    ],
    ids=["uniform", "static", "uniform-other4-space2", "overlap-static", "overlap-uniform"],
)
def test_agrees_in_distribution_with_row_by_row_reference(cfg: MaskConfig) -> None:
    rows, size = 3000, 48
    ref_rng = np.random.default_rng(123)
    ref = np.stack([_reference_row(size, cfg, ref_rng) for _ in range(rows)])
    ours = compute_mask(rows, size, torch.full((rows,), size), cfg, np.random.default_rng(7)).numpy()
    ref_counts, our_counts = ref.sum(1), ours.sum(1)
    stderr = np.sqrt(ref_counts.var() / rows + our_counts.var() / rows)
    assert abs(ref_counts.mean() - our_counts.mean()) < 4 * stderr
    assert abs(ref_counts.std() - our_counts.std()) < 0.1 * ref_counts.std()
    # Where in the row the mask falls (edges are masked less often): per-position rates agree.
    assert np.abs(ref.mean(0) - ours.mean(0)).max() < 0.05


def test_same_seed_same_mask_different_seed_different() -> None:
    cfg = MaskConfig()
    lengths = torch.tensor([300, 250, 120, 299])
    a = compute_mask(4, 300, lengths, cfg, np.random.default_rng(5))
    b = compute_mask(4, 300, lengths, cfg, np.random.default_rng(5))
    c = compute_mask(4, 300, lengths, cfg, np.random.default_rng(6))
    assert a.dtype == torch.bool and a.shape == (4, 300)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize(
    "cfg", [MaskConfig(), MaskConfig(per_row=True), MaskConfig(no_overlap=False, per_row=True)]
)
def test_padding_is_never_masked(cfg: MaskConfig) -> None:
    rng = np.random.default_rng(0)
    for seed in range(20):
        lengths = torch.from_numpy(rng.integers(1, 201, size=9))
        mask = compute_mask(9, 200, lengths, cfg, np.random.default_rng(seed))
        pad = torch.arange(200)[None, :] >= lengths[:, None]
        assert not (mask & pad).any()


@pytest.mark.parametrize("min_masks", [2, 3])
def test_min_masks_honoured_on_short_rows(min_masks: int) -> None:
    # p = 0 would give no span at all; 30 valid frames always fit min_masks static spans of 5.
    cfg = MaskConfig(mask_prob=0.0, mask_length=5, selection="static", min_masks=min_masks, per_row=True)
    mask = compute_mask(16, 40, torch.full((16,), 30), cfg, np.random.default_rng(1))
    for row in mask:
        assert [length for _, length in _runs(row)] == [5] * min_masks
    assert not mask[:, 30:].any()


def test_no_overlap_keeps_min_space_between_spans() -> None:
    cfg = MaskConfig(mask_prob=0.8, mask_length=10, selection="static", min_space=3, per_row=True)
    mask = compute_mask(20, 499, None, cfg, np.random.default_rng(2))
    for row in mask:
        runs = _runs(row)
        assert len(runs) >= 20
        assert all(length == 10 for _, length in runs)
        gaps = [s2 - (s1 + l1) for (s1, l1), (s2, _) in zip(runs, runs[1:])]
        assert min(gaps) >= 3


def test_batch_cut_is_a_subset_of_per_row_masks_with_the_smallest_count() -> None:
    lengths = torch.tensor([499, 499, 350, 420, 499, 200])
    per_row = compute_mask(6, 499, lengths, MaskConfig(per_row=True), np.random.default_rng(11))
    cut = compute_mask(6, 499, lengths, MaskConfig(per_row=False), np.random.default_rng(11))
    counts = per_row.sum(1)
    assert len(set(counts.tolist())) > 1
    assert (cut.sum(1) == counts.min()).all()
    assert not (cut & ~per_row).any()


def test_masked_fraction_counts_valid_frames_only() -> None:
    mask = torch.zeros(2, 10, dtype=torch.bool)
    mask[0, :3] = True
    mask[1, 8:] = True  # in padding: not counted
    pad = torch.arange(10)[None, :] >= torch.tensor([[6], [8]])
    assert masked_fraction(mask, pad) == pytest.approx(3 / 14)
    assert masked_fraction(mask) == pytest.approx(5 / 20)


def test_bad_config_and_lengths_name_the_problem() -> None:
    with pytest.raises(ConfigError, match="mask_prob"):
        MaskConfig(mask_prob=1.5)
    with pytest.raises(ConfigError, match="selection"):
        from_dict(MaskConfig, {"selection": "poisson"})
    with pytest.raises(ConfigError, match="mask_other"):
        MaskConfig(mask_other=2.5)
    with pytest.raises(ValueError, match="lengths"):
        compute_mask(2, 10, torch.tensor([5, 11]), MaskConfig(), np.random.default_rng(0))
