"""k-means on frame features (HuBERT's first-iteration units), in torch.

Written here rather than taken from scikit-learn to keep the core install small; it is the
plain Lloyd algorithm with k-means++ seeding on a subsample.
"""

from __future__ import annotations

import torch
from torch import Tensor

from armdistill.errors import DataError


def kmeans(x: Tensor, k: int, iters: int = 25, seed: int = 0, fit_frames: int = 200_000) -> Tensor:
    """Cluster ``x [N, D]`` into ``k`` clusters; returns the assignment ``[N]`` (int64)."""
    if x.shape[0] < k:
        raise DataError(f"kmeans: {x.shape[0]} frames are fewer than k={k} clusters")
    g = torch.Generator().manual_seed(seed)
    sample = x[torch.randperm(x.shape[0], generator=g)[:fit_frames]].float()
    centres = sample[torch.randint(len(sample), (1,), generator=g)]
    for _ in range(1, k):
        d2 = torch.cdist(sample, centres).min(dim=1).values ** 2
        centres = torch.cat([centres, sample[torch.multinomial(d2 / d2.sum(), 1, generator=g)]])
    for _ in range(iters):
        assign = torch.cdist(sample, centres).argmin(dim=1)
        sums = torch.zeros_like(centres).index_add_(0, assign, sample)
        counts = torch.bincount(assign, minlength=k)[:, None]
        centres = torch.where(counts > 0, sums / counts.clamp(min=1), centres)
    return torch.cat([torch.cdist(chunk.float(), centres).argmin(dim=1) for chunk in x.split(65536)])
