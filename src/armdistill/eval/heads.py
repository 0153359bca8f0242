"""SUPERB-style probe modules: the learned weighted sum of upstream layers and the heads.

PR: linear + CTC; ASR: 2-layer BiLSTM + linear + CTC; KS / SID: mean pooling + linear.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from armdistill.frames import valid_mask


class WeightedSum(nn.Module):
    """Softmax-weighted sum of the upstream's layers, weights initialised equal.

    With ``layer_norm`` each layer is normalised over its feature dim first (no affine
    parameters), so layers of different scales compete on their content, as in SUPERB.
    """

    def __init__(self, num_layers: int, layer_norm: bool = True):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(num_layers))
        self.layer_norm = layer_norm

    @property
    def weights(self) -> Tensor:
        """``[layers]``, non-negative, summing to 1."""
        return torch.softmax(self.logits, dim=0)

    def forward(self, layers: Tensor) -> Tensor:
        """``[layers, batch, frames, dim]`` (any float dtype) -> ``[batch, frames, dim]`` float32."""
        if layers.shape[0] != self.logits.shape[0]:
            raise ValueError(f"weighted sum: expected {self.logits.shape[0]} layers, got {layers.shape[0]}")
        weights = self.weights
        out = None
        # One layer at a time keeps the float32 copy to a single layer's size.
        for i in range(layers.shape[0]):
            x = layers[i].float()
            if self.layer_norm:
                x = F.layer_norm(x, x.shape[-1:])
            out = weights[i] * x if out is None else out + weights[i] * x
        return out


class LinearHead(nn.Module):
    """Frame-wise linear map to CTC classes: ``[batch, frames, dim]`` -> ``[batch, frames, classes]``."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.proj = nn.Linear(dim, num_classes)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        return self.proj(x)


class BiLSTMHead(nn.Module):
    """2-layer bidirectional LSTM then a linear map: ``[batch, frames, dim]`` -> ``[batch, frames, classes]``.

    Sequences are packed so the backward direction starts at each utterance's last valid frame.
    """

    def __init__(self, dim: int, num_classes: int, hidden: int = 256, num_layers: int = 2, dropout: float = 0.2):
        super().__init__()
        self.lstm = nn.LSTM(dim, hidden, num_layers=num_layers, bidirectional=True, batch_first=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.proj = nn.Linear(2 * hidden, num_classes)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        packed = pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return self.proj(out)


class MeanPoolHead(nn.Module):
    """Mean over valid frames, then linear: ``[batch, frames, dim]`` -> ``[batch, classes]``."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.proj = nn.Linear(dim, num_classes)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        valid = valid_mask(lengths, x.shape[1]).to(x.dtype)
        pooled = (x * valid[..., None]).sum(dim=1) / valid.sum(dim=1, keepdim=True).clamp(min=1.0)
        return self.proj(pooled)


class Probe(nn.Module):
    """Weighted sum of frozen layers followed by a task head."""

    def __init__(self, num_layers: int, head: nn.Module, layer_norm: bool = True):
        super().__init__()
        self.weighted_sum = WeightedSum(num_layers, layer_norm)
        self.head = head

    def forward(self, layers: Tensor, lengths: Tensor) -> Tensor:
        """layers ``[layers, batch, frames, dim]``, lengths ``[batch]`` -> head output."""
        return self.head(self.weighted_sum(layers), lengths)
