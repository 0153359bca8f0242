"""Multiply-accumulate counts with torch's own FLOP counter.

The counter has no formula for the CPU kernel of ``scaled_dot_product_attention`` and so
counts it as zero; we register torch's SDPA formula for it, so attention is counted as the
chosen reuse mode computes it (``paper`` recomputes ``Q_prev K_prev^T`` in reusing layers,
``explicit`` / ``release`` apply a stored map).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from armdistill.frames import SAMPLE_RATE


def _sdpa_cpu_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


_CUSTOM = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flops}


def count_macs(forward: Callable[[Tensor], object], seconds: float = 10.0, sample_rate: int = SAMPLE_RATE) -> int:
    """MACs (FLOPs / 2) of ``forward`` on one ``seconds``-long waveform ``[1, samples]``."""
    wav = torch.randn(1, int(round(seconds * sample_rate)), generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_CUSTOM) as counter:
        forward(wav)
    return counter.get_total_flops() // 2


def gmacs_per_second(forward: Callable[[Tensor], object], seconds: float = 10.0) -> float:
    """GMACs per second of audio of ``forward``, counted on one ``seconds``-long input."""
    return count_macs(forward, seconds) / seconds / 1e9
