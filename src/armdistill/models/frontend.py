"""Waveform front end of the student: the strided CNN over raw 16 kHz audio.

Frame counts and padding-exact GroupNorm come from ``armdistill.frames``, which teachers use too.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from armdistill.frames import conv_output_lengths, masked_group_norm


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
