"""Waveform front end: the strided CNN, frame lengths, and padding-exact GroupNorm.

Shared by students and teachers, so both agree on frame counts and padding masks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from armdistill.models.config import WAV2VEC2_CNN


def receptive_field(kernels_strides: Sequence[tuple[int, int]]) -> int:
    """Fewest samples that give one frame (``conv_output_lengths`` is 0 below it)."""
    field, jump = 1, 1
    for kernel, stride in kernels_strides:
        field += (kernel - 1) * jump
        jump *= stride
    return field


# The shortest usable file for the wav2vec 2.0 CNN, which every preset's CNN matches (400 samples).
MIN_SAMPLES = receptive_field([(kernel, stride) for _, kernel, stride in WAV2VEC2_CNN])


def conv_output_lengths(lengths: Tensor, kernels_strides: Sequence[tuple[int, int]]) -> Tensor:
    """Valid frame count after each unpadded conv: ``floor((L - kernel) / stride) + 1``."""
    out = lengths.clone()
    for kernel, stride in kernels_strides:
        out = torch.div(out - kernel, stride, rounding_mode="floor") + 1
    return out.clamp(min=0)


def padding_mask(lengths: Tensor, max_len: int) -> Tensor:
    """``[batch, max_len]`` bool mask, True at padded positions."""
    return torch.arange(max_len, device=lengths.device)[None, :] >= lengths[:, None]


def masked_group_norm(x: Tensor, lengths: Tensor | None, norm: nn.GroupNorm) -> Tensor:
    """GroupNorm over time whose statistics use each utterance's valid frames only.

    x: ``[batch, channels, time]``; lengths: valid frames per utterance. Gives at valid frames
    exactly what ``norm`` gives on the utterance alone, unpadded; padded frames are zeroed.
    """
    if lengths is None:
        return norm(x)
    batch, channels, time = x.shape
    groups = norm.num_groups
    valid = (~padding_mask(lengths, time)).to(x.dtype)  # [batch, time]
    xf = x.float().view(batch, groups, channels // groups, time)
    w = valid.float()[:, None, None, :]
    count = (w.sum(dim=-1, keepdim=True) * (channels // groups)).clamp(min=1)
    mean = (xf * w).sum(dim=(2, 3), keepdim=True) / count
    var = (((xf - mean) ** 2) * w).sum(dim=(2, 3), keepdim=True) / count
    y = ((xf - mean) * torch.rsqrt(var + norm.eps)).view(batch, channels, time).to(x.dtype)
    if norm.affine:
        y = y * norm.weight[None, :, None] + norm.bias[None, :, None]
    return y * valid[:, None, :]


class ConvLayer(nn.Module):
    """Conv1d -> (GroupNorm on the first layer) -> GELU."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, bias: bool, group_norm: bool):
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv = nn.Conv1d(in_ch, out_ch, kernel, stride=stride, bias=bias)
        self.layer_norm = nn.GroupNorm(out_ch, out_ch, affine=True) if group_norm else None

    def forward(self, x: Tensor, lengths: Tensor | None, exact_padding: bool) -> tuple[Tensor, Tensor | None]:
        """x: ``[batch, in_ch, samples]`` -> ``[batch, out_ch, frames]`` and the new valid lengths."""
        x = self.conv(x)
        if lengths is not None:
            lengths = conv_output_lengths(lengths, [(self.kernel, self.stride)])
        if self.layer_norm is not None:
            x = masked_group_norm(x, lengths, self.layer_norm) if exact_padding else self.layer_norm(x)
        return F.gelu(x), lengths


class FeatureExtractor(nn.Module):
    """The wav2vec 2.0 style CNN over raw 16 kHz waveforms, GroupNorm on the first conv only."""

    def __init__(self, conv_layers: Sequence[tuple[int, int, int]], bias: bool = False):
        super().__init__()
        layers, in_ch = [], 1
        for i, (ch, kernel, stride) in enumerate(conv_layers):
            layers.append(ConvLayer(in_ch, ch, kernel, stride, bias=bias, group_norm=i == 0))
            in_ch = ch
        self.conv_layers = nn.ModuleList(layers)

    @property
    def kernels_strides(self) -> list[tuple[int, int]]:
        return [(layer.kernel, layer.stride) for layer in self.conv_layers]

    def forward(self, wav: Tensor, lengths: Tensor | None = None, exact_padding: bool = True) -> tuple[Tensor, Tensor | None]:
        """wav: ``[batch, samples]`` -> features ``[batch, frames, channels]``, valid frame lengths."""
        x = wav[:, None, :]
        for layer in self.conv_layers:
            x, lengths = layer(x, lengths, exact_padding)
        return x.transpose(1, 2), lengths
