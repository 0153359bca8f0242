"""Transformer encoder pieces of the student: positional convolution, layers, gradient scaling."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from armdistill.models.attention import AttentionState, ReuseMode, SelfAttention


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return grad * ctx.scale, None


def scale_grad(x: Tensor, scale: float) -> Tensor:
    """Identity in the forward pass; multiplies the gradient by ``scale`` in the backward pass."""
    return _ScaleGrad.apply(x, scale) if scale != 1.0 else x


class PositionalConv(nn.Module):
    """Grouped convolutional positional embedding with weight norm over the kernel axis (dim 2).

    x: ``[batch, frames, dim]`` -> ``[batch, frames, dim]`` (GELU applied; added by the caller).
    An even kernel yields one extra output frame, which is dropped.
    """

    def __init__(self, dim: int, kernel: int, groups: int):
        super().__init__()
        conv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=groups)
        self.conv = weight_norm(conv, name="weight", dim=2)
        self.drop_last = kernel % 2 == 0

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x.transpose(1, 2))
        if self.drop_last:
            y = y[:, :, :-1]
        return F.gelu(y).transpose(1, 2)


class FeedForward(nn.Module):
    def __init__(self, dim: int, ffn_dim: int, activation_dropout: float, dropout: float):
        super().__init__()
        self.intermediate_dense = nn.Linear(dim, ffn_dim)
        self.output_dense = nn.Linear(ffn_dim, dim)
        self.activation_dropout = nn.Dropout(activation_dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = self.activation_dropout(F.gelu(self.intermediate_dense(x)))
        return self.dropout(self.output_dense(x))


class EncoderLayer(nn.Module):
    """One Transformer layer, post-LN (``LN(x + f(x))``) or pre-LN (``x + f(LN(x))``).

    x: ``[batch, frames, dim]``; key_padding_mask ``[batch, frames]`` (True at padding).
    """

    def __init__(
        self,
        dim: int,
        ffn_dim: int,
        num_heads: int,
        computes_attention: bool,
        layer_norm_first: bool,
        dropout: float,
        attention_dropout: float,
        activation_dropout: float,
    ):
        super().__init__()
        self.attention = SelfAttention(dim, num_heads, attention_dropout, computes_attention)
        self.dropout = nn.Dropout(dropout)
        self.layer_norm = nn.LayerNorm(dim)
        self.feed_forward = FeedForward(dim, ffn_dim, activation_dropout, dropout)
        self.final_layer_norm = nn.LayerNorm(dim)
        self.layer_norm_first = layer_norm_first

    @property
    def computes_attention(self) -> bool:
        return self.attention.computes_attention

    def forward(
        self,
        x: Tensor,
        key_padding_mask: Tensor | None,
        mode: ReuseMode,
        prev: AttentionState | None,
        need_weights: bool = False,
    ) -> tuple[Tensor, AttentionState | None, Tensor | None]:
        residual = x
        if self.layer_norm_first:
            x = self.layer_norm(x)
        x, state, weights = self.attention(x, key_padding_mask, mode, prev, need_weights)
        x = residual + self.dropout(x)
        if self.layer_norm_first:
            x = x + self.feed_forward(self.final_layer_norm(x))
        else:
            x = self.layer_norm(x)
            x = self.final_layer_norm(x + self.feed_forward(x))
        return x, state, weights
