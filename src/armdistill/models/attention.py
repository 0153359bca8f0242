"""Self-attention with attention-map reuse (ARM): where the reuse happens.

A layer either *computes* attention (query, key, value and output projections) or *reuses*
the map of the most recent computing layer (value and output projections only). A computing
layer builds an :class:`AttentionState`; a reusing layer asks :func:`reused_map` for the map
it applies to its own values. Three mathematically distinct routes, chosen by ``reuse_mode``:

* ``paper``: a reusing layer applies ``softmax(Q_prev K_prev^T / sqrt(d))`` to its own values via
  ``scaled_dot_product_attention(q_prev, k_prev, v)``; no ``[T, T]`` tensor is stored, and flash
  kernels apply.
* ``explicit``: the same maths with the probability map materialised and handed on.
* ``release``: what the released checkpoints were trained with (below).

Everything the ``release`` switch changes, in one place:

=========================  ============================  =========================================
what                       ``paper`` / ``explicit``      ``release``
=========================  ============================  =========================================
map a reusing layer        the computing layer's         that map laid out heads-major ``[heads,
applies                    ``softmax(QK^T / sqrt(d))``   batch, T, S]`` and read as batch-major
(:func:`reused_map`)                                     (:func:`release_reinterpret`: utterance
                                                         b, head h gets another pair's map),
                                                         padded keys masked with the *receiving*
                                                         utterance's padding, soft-maxed again
dropout on a reused map    ``attention_dropout``         none
CNN GroupNorm              over each utterance's valid   plain ``GroupNorm``, padding included
(``models/student.py``)    samples (``frames.py``)
=========================  ============================  =========================================

Two more settings reproduce the published runs; they are switches of their own, not modes:
``loss.release_compat`` (``distill/losses.py``: padded frames in the loss, divided by batch x
frames) and ``grad_scale`` (``StudentConfig``, applied in ``models/student.py``: the release's
per-layer gradient split, on in the ARM presets whatever the mode).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

import torch.nn.functional as F
from torch import Tensor, nn

ReuseMode = Literal["paper", "explicit", "release"]
REUSE_MODES: tuple[ReuseMode, ...] = get_args(ReuseMode)
# How ``paper`` mode runs a reused map: recomputed inside SDPA, or stored and applied (the
# ``explicit`` route). Same maths; a run-time choice (``Student.forward``), not part of a saved student.
ReuseKernel = Literal["sdpa", "stored"]
REUSE_KERNELS: tuple[ReuseKernel, ...] = get_args(ReuseKernel)


@dataclass
class AttentionState:
    """What a computing layer hands to the reusing layers after it.

    q, k: ``[batch, heads, frames, head_dim]``; probs: ``[batch, heads, T, S]``, the post-softmax
    map before dropout (None when nothing needs it: ``paper`` mode without ``need_weights``).
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


def attention_probs(q: Tensor, k: Tensor, key_padding_mask: Tensor | None) -> Tensor:
    """``softmax(q k^T / sqrt(head_dim))``: q, k ``[batch, heads, frames, head_dim]`` -> ``[batch, heads, T, S]``."""
    return _masked_softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), key_padding_mask)


def release_reinterpret(probs: Tensor) -> Tensor:
    """The release's heads-major map read as batch-major: ``[B, H, T, S]`` -> ``[B, H, T, S]``.

    Row ``b * H + h`` of the result is row ``h * B + b`` of the heads-major layout.
    """
    batch, heads, t, s = probs.shape
    return probs.transpose(0, 1).contiguous().view(batch, heads, t, s)


def reused_map(
    mode: ReuseMode, prev: AttentionState, key_padding_mask: Tensor | None, need_weights: bool
) -> Tensor | None:
    """The map ``[batch, heads, T, S]`` a reusing layer applies to its values; None in ``paper``
    mode without ``need_weights``, where SDPA recomputes it from ``prev.q`` and ``prev.k``."""
    if mode == "paper":
        return attention_probs(prev.q, prev.k, key_padding_mask) if need_weights else None
    if mode == "explicit":
        return prev.probs
    return _masked_softmax(release_reinterpret(prev.probs), key_padding_mask)


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

    def _state(self, x: Tensor, key_padding_mask: Tensor | None, materialise: bool) -> AttentionState:
        """A computing layer's query, key and (when ``materialise``) probability map."""
        state = AttentionState(q=self._heads(self.q_proj(x)), k=self._heads(self.k_proj(x)))
        if materialise:
            state.probs = attention_probs(state.q, state.k, key_padding_mask)
        return state

    def forward(
        self,
        x: Tensor,
        key_padding_mask: Tensor | None,
        mode: ReuseMode,
        prev: AttentionState | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, AttentionState | None, Tensor | None]:
        """Returns the output ``[batch, frames, dim]``, the state to hand on (computing layers),
        and the applied map ``[batch, heads, T, S]`` when ``need_weights``."""
        v = self._heads(self.v_proj(x))
        p_drop = self.dropout if self.training else 0.0
        if self.computes_attention:
            state = self._state(x, key_padding_mask, materialise=mode != "paper" or need_weights)
            qk, weights = state, state.probs
        else:
            if prev is None:
                raise RuntimeError("a reusing layer needs the map of an earlier computing layer")
            state, qk = None, prev
            weights = reused_map(mode, prev, key_padding_mask, need_weights)
            if mode == "release":
                p_drop = 0.0
        if weights is None:
            attn_mask = None if key_padding_mask is None else ~key_padding_mask[:, None, None, :]
            out = F.scaled_dot_product_attention(qk.q, qk.k, v, attn_mask=attn_mask, dropout_p=p_drop)
        else:
            out = F.dropout(weights, p_drop, self.training).to(v.dtype) @ v
        batch, _, frames, _ = out.shape
        out = self.out_proj(out.transpose(1, 2).reshape(batch, frames, -1))
        return out, state, (weights if need_weights else None)
