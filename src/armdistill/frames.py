"""Frames and padding: the one home for frame counts, padding masks and padding-exact GroupNorm.

Students, teachers, eval and pretraining all import this module, so every side agrees on how
many frames a waveform gives and which of them are padding. Masks are ``[batch, max_len]``
bool; ``padding_mask`` is True at padding, ``valid_mask`` its complement.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


def conv_output_lengths(lengths: Tensor, kernels_strides: Sequence[tuple[int, int]]) -> Tensor:
    """Valid frame count after each unpadded conv: ``floor((L - kernel) / stride) + 1``."""
    out = lengths.clone()
    for kernel, stride in kernels_strides:
        out = torch.div(out - kernel, stride, rounding_mode="floor") + 1
    return out.clamp(min=0)


def receptive_field(kernels_strides: Sequence[tuple[int, int]]) -> int:
    """Fewest samples that give one frame (``conv_output_lengths`` is 0 below it)."""
    field, jump = 1, 1
    for kernel, stride in kernels_strides:
        field += (kernel - 1) * jump
        jump *= stride
    return field


# The input rate of every model here (teachers, students, baselines): audio is read and resampled to it.
SAMPLE_RATE = 16000
# (kernel, stride) of wav2vec 2.0 / HuBERT Base's CNN: stride 320, 50 Hz at 16 kHz.
WAV2VEC2_KERNELS_STRIDES: tuple[tuple[int, int], ...] = ((10, 5),) + ((3, 2),) * 4 + ((2, 2),) * 2
# The shortest usable audio file: one frame of that CNN, which every student preset matches (400 samples).
MIN_SAMPLES = receptive_field(WAV2VEC2_KERNELS_STRIDES)


def valid_mask(lengths: Tensor, max_len: int) -> Tensor:
    """``[batch, max_len]`` bool mask, True at the first ``lengths[b]`` positions of row ``b``."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def padding_mask(lengths: Tensor, max_len: int) -> Tensor:
    """``[batch, max_len]`` bool mask, True at padded positions."""
    return ~valid_mask(lengths, max_len)


def masked_group_norm(x: Tensor, lengths: Tensor | None, norm: nn.GroupNorm) -> Tensor:
    """GroupNorm over time whose statistics use each utterance's valid frames only.

    x: ``[batch, channels, time]``; lengths: valid frames per utterance. Gives at valid frames
    exactly what ``norm`` gives on the utterance alone, unpadded; padded frames are zeroed.
    """
    if lengths is None:
        return norm(x)
    batch, channels, time = x.shape
    groups = norm.num_groups
    valid = valid_mask(lengths, time).to(x.dtype)  # [batch, time]
    xf = x.float().view(batch, groups, channels // groups, time)
    w = valid.float()[:, None, None, :]
    count = (w.sum(dim=-1, keepdim=True) * (channels // groups)).clamp(min=1)
    mean = (xf * w).sum(dim=(2, 3), keepdim=True) / count
    var = (((xf - mean) ** 2) * w).sum(dim=(2, 3), keepdim=True) / count
    y = ((xf - mean) * torch.rsqrt(var + norm.eps)).view(batch, channels, time).to(x.dtype)
    if norm.affine:
        y = y * norm.weight[None, :, None] + norm.bias[None, :, None]
    return y * valid[:, None, :]
