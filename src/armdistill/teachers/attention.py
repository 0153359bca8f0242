"""Teacher attention kernels: SDPA (the default) or eager, with an SDPA path for WavLM.

transformers runs WavLM's attention eagerly only (``F.multi_head_attention_forward`` with
``need_weights=True``), because of its gated relative position bias. The bias is an additive
term on the scores, so it fits SDPA as a float ``attn_mask``: for head ``h`` and query ``t``,
``gate[b, h, t] * rel_bias[h, t, s]``, with ``-inf`` at padded keys. The maths is the same; only
the kernel changes, so outputs agree with transformers' to float rounding.

:func:`set_attention` picks the kernel of any teacher model: for WavLM it switches the
:class:`WavLMAttention` modules' class in place (not their weights: state-dict keys, saving and
fingerprints are unchanged); other models take transformers' own ``sdpa`` or ``eager`` kernel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import PreTrainedModel
from transformers.models.wavlm.modeling_wavlm import WavLMAttention


class WavLMSdpaAttention(WavLMAttention):
    """:class:`WavLMAttention` with the gated bias as an SDPA float mask.

    Hands on the ungated bias ``[1, heads, T, T]`` (transformers hands on ``[batch * heads, T, T]``);
    every layer of a model must therefore use the same class, which :func:`set_attention` ensures.
    """

    def forward(
        self,
        hidden_states: Tensor,
        attention_mask: Tensor | None = None,
        position_bias: Tensor | None = None,
        index: int = 0,
        **kwargs: object,
    ) -> tuple[Tensor, None, Tensor]:
        """hidden_states ``[batch, frames, dim]``; attention_mask ``[batch, frames]`` (1 / True at
        valid frames) -> (output ``[batch, frames, dim]``, None, ungated bias)."""
        batch, frames, _ = hidden_states.shape
        if position_bias is None:
            position_bias = self.compute_bias(frames, frames)[None]  # [1, heads, T, T]

        def heads(x: Tensor) -> Tensor:
            return x.view(batch, frames, self.num_heads, self.head_dim).transpose(1, 2)

        # the gate as transformers computes it, from this layer's input split into heads
        rel = self.gru_rel_pos_linear(heads(hidden_states))  # [batch, heads, T, 8]
        gate_a, gate_b = torch.sigmoid(rel.view(*rel.shape[:-1], 2, 4).sum(-1)).chunk(2, dim=-1)
        gate = gate_a * (gate_b * self.gru_rel_pos_const - 1.0) + 2.0  # [batch, heads, T, 1]

        q, k, v = (heads(linear(hidden_states)) for linear in (self.q_proj, self.k_proj, self.v_proj))
        bias = gate * position_bias
        if attention_mask is not None:
            bias = bias.masked_fill(attention_mask.ne(1)[:, None, None, :], float("-inf"))
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias.to(q.dtype), dropout_p=self.dropout if self.training else 0.0
        )
        out = self.out_proj(out.transpose(1, 2).reshape(batch, frames, self.embed_dim))
        return out, None, position_bias


def set_attention(model: PreTrainedModel, sdpa: bool) -> None:
    """Run ``model``'s self-attention through SDPA (``sdpa``) or transformers' eager kernel, in place."""
    modules = [m for m in model.modules() if isinstance(m, WavLMAttention)]
    if not modules:
        model.set_attn_implementation("sdpa" if sdpa else "eager")
    for module in modules:
        module.__class__ = WavLMSdpaAttention if sdpa else WavLMAttention
