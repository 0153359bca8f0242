"""Self-attention with attention-map reuse (ARM): where the reuse happens.

A layer either *computes* attention (query, key, value and output projections) or *reuses*
the map of the most recent computing layer (value and output projections only). Three
mathematically distinct routes, chosen by ``mode``:

* ``paper``: a reusing layer applies ``softmax(Q_prev K_prev^T / sqrt(d))`` to its own values via
  ``scaled_dot_product_attention(q_prev, k_prev, v)``; no ``[T, T]`` tensor is stored, and flash
  kernels apply.
* ``explicit``: the same maths with the probability map materialised and handed on.
* ``release``: what the released checkpoints were trained with. The handed-on map is the
  post-softmax probability map laid out heads-major ``[heads, batch, T, S]``; the reusing layer
  reads it as batch-major without transposing (so utterance b, head h gets another
  (utterance, head) pair's map), masks padded keys with the *receiving* utterance's padding,
  applies softmax a second time and no dropout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class AttentionState:
    """What a computing layer hands to the reusing layers after it.

    q, k: ``[batch, heads, frames, head_dim]``; probs: ``[batch, heads, T, S]`` (explicit and
    release modes only), the post-softmax map before dropout.
    """

    q: Tensor
    k: Tensor
    probs: Tensor | None = None


def _masked_softmax(scores: Tensor, key_padding_mask: Tensor | None) -> Tensor:
    """scores ``[batch, heads, T, S]`` -> float32 probabilities, padded keys get zero weight."""
    scores = scores.float()
    if key_padding_mask is not None:
        scores = scores.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
    return scores.softmax(dim=-1)


def release_reinterpret(probs: Tensor) -> Tensor:
    """The release's heads-major map read as batch-major: ``[B, H, T, S]`` -> ``[B, H, T, S]``.

    Row ``b * H + h`` of the result is row ``h * B + b`` of the heads-major layout.
    """
    batch, heads, t, s = probs.shape
    return probs.transpose(0, 1).contiguous().view(batch, heads, t, s)


class SelfAttention(nn.Module):
    """Multi-head self-attention that computes or reuses its map.

    x: ``[batch, frames, dim]``; key_padding_mask: ``[batch, frames]``, True at padding.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float, computes_attention: bool):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.dropout = dropout
        self.computes_attention = computes_attention
        if computes_attention:
            self.q_proj = nn.Linear(dim, dim)
            self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def _heads(self, x: Tensor) -> Tensor:
        batch, frames, _ = x.shape
        return x.view(batch, frames, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(
        self,
        x: Tensor,
        key_padding_mask: Tensor | None,
        mode: str,
        prev: AttentionState | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, AttentionState | None, Tensor | None]:
        """Returns the output ``[batch, frames, dim]``, the state to hand on (computing layers),
        and the applied map ``[batch, heads, T, S]`` when ``need_weights``."""
        v = self._heads(self.v_proj(x))
        p_drop = self.dropout if self.training else 0.0
        if self.computes_attention:
            state = AttentionState(q=self._heads(self.q_proj(x)), k=self._heads(self.k_proj(x)))
        else:
            if prev is None:
                raise RuntimeError("a reusing layer needs the map of an earlier computing layer")
            state = None
        src = state if state is not None else prev

        weights = None
        if mode == "paper" and not need_weights:
            attn_mask = None if key_padding_mask is None else ~key_padding_mask[:, None, None, :]
            out = F.scaled_dot_product_attention(src.q, src.k, v, attn_mask=attn_mask, dropout_p=p_drop)
        else:
            if state is not None or mode == "paper":
                scores = src.q @ src.k.transpose(-1, -2) / math.sqrt(self.head_dim)
                weights = _masked_softmax(scores, key_padding_mask)
                if state is not None:
                    state.probs = weights
            elif mode == "explicit":
                weights = prev.probs
            else:  # release: reinterpreted map, second softmax, no dropout
                weights = _masked_softmax(release_reinterpret(prev.probs), key_padding_mask)
                p_drop = 0.0
            out = F.dropout(weights, p_drop, self.training).to(v.dtype) @ v
        batch, _, frames, _ = out.shape
        out = self.out_proj(out.transpose(1, 2).reshape(batch, frames, -1))
        return out, state, (weights if need_weights else None)
