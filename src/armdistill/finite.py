"""Finiteness checks of tensors, for the training guard, checkpoints, students and teachers."""

from __future__ import annotations

import torch
from torch import Tensor


def nonfinite_names(tensors: dict[str, Tensor]) -> list[str]:
    """Names of the floating-point tensors holding a NaN or an infinity (empty when all are finite)."""
    floats = {k: v for k, v in tensors.items() if v.is_floating_point()}
    # one fused norm first (one synchronisation); the per-tensor pass runs only when it is not finite
    if not floats or torch.isfinite(torch.nn.utils.get_total_norm(list(floats.values()))):
        return []
    return [k for k, v in floats.items() if not bool(torch.isfinite(v).all())]
