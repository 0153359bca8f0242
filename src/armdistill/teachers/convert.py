"""Original fairseq / unilm / s3prl teacher checkpoints -> transformers models, in memory.

Weights are renamed to the transformers layout (no fairseq import); the file is read with the
restricted unpickler, so foreign classes inside it (fairseq dictionaries, omegaconf configs)
become inert stand-ins and any other global is refused before anything runs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from transformers import HubertModel, PreTrainedModel, Wav2Vec2Model, WavLMModel

from armdistill.errors import FileFormatError
from armdistill.io.safe_pickle import safe_torch_load
from armdistill.teachers.fairseq_config import split_config, transformers_config

MODEL_CLASSES: dict[str, type[PreTrainedModel]] = {"hubert": HubertModel, "wav2vec2": Wav2Vec2Model, "wavlm": WavLMModel}

# Pre-training heads and quantisers the teacher does not use.
_DROPPED = re.compile(r"^(final_proj|label_embs_concat|quantizer|project_q|project_inp|target_glu)(\.|$)")

# (pattern, replacement) applied in order to each original key.
_RENAMES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p), r)
    for p, r in [
        (r"^feature_extractor\.conv_layers\.(\d+)\.0\.", r"feature_extractor.conv_layers.\1.conv."),
        # GroupNorm sits at index 2; LayerNorm mode wraps it as (TransposeLast, LayerNorm, TransposeLast).
        (r"^feature_extractor\.conv_layers\.(\d+)\.2\.(1\.)?", r"feature_extractor.conv_layers.\1.layer_norm."),
        (r"^layer_norm\.", "feature_projection.layer_norm."),
        (r"^post_extract_proj\.", "feature_projection.projection."),
        (r"^mask_emb$", "masked_spec_embed"),
        (r"^encoder\.pos_conv\.0\.(weight_g|parametrizations\.weight\.original0)$",
         "encoder.pos_conv_embed.conv.parametrizations.weight.original0"),
        (r"^encoder\.pos_conv\.0\.(weight_v|parametrizations\.weight\.original1)$",
         "encoder.pos_conv_embed.conv.parametrizations.weight.original1"),
        (r"^encoder\.pos_conv\.0\.bias$", "encoder.pos_conv_embed.conv.bias"),
        (r"\.self_attn\.grep_linear\.", ".attention.gru_rel_pos_linear."),
        (r"\.self_attn\.grep_a$", ".attention.gru_rel_pos_const"),
        (r"\.self_attn\.relative_attention_bias\.", ".attention.rel_attn_embed."),
        (r"\.self_attn\.", ".attention."),
        (r"\.self_attn_layer_norm\.", ".layer_norm."),
        (r"\.fc1\.", ".feed_forward.intermediate_dense."),
        (r"\.fc2\.", ".feed_forward.output_dense."),
    ]
]


def rename_key(key: str) -> str | None:
    """The transformers name of an original state-dict key; None for dropped pre-training heads."""
    if _DROPPED.match(key):
        return None
    for pattern, repl in _RENAMES:
        key = pattern.sub(repl, key)
    return key


def detect_kind(model_cfg: dict[str, Any], weights: dict[str, Tensor]) -> str:
    """'hubert', 'wav2vec2' or 'wavlm' from the config's model name, else from the weight names."""
    name = str(model_cfg.get("_name") or model_cfg.get("arch") or "")
    if name.startswith("hubert"):
        return "hubert"
    if name.startswith("wav2vec2"):
        return "wav2vec2"
    if name:
        raise FileFormatError(f"model {name!r} is not supported; expected a HuBERT, wav2vec 2.0 or WavLM checkpoint")
    if any(".relative_attention_bias." in k or ".grep_linear." in k for k in weights):
        return "wavlm"
    if any(k.startswith(("quantizer.", "project_q.")) for k in weights):
        return "wav2vec2"
    return "hubert"


def _weights(ckpt: dict[str, Any]) -> dict[str, Tensor]:
    weights = ckpt.get("model_weight", ckpt.get("model"))
    if not isinstance(weights, dict) or not all(isinstance(v, Tensor) for v in weights.values()):
        raise FileFormatError("expected a state dict of tensors under 'model' (or 'model_weight')")
    return weights


def model_from_original(ckpt: dict[str, Any]) -> tuple[PreTrainedModel, bool]:
    """A loaded checkpoint dict -> (transformers model in eval mode, waveform ``normalize`` flag)."""
    weights = _weights(ckpt)
    model_cfg, task_cfg = split_config(ckpt)
    kind = detect_kind(model_cfg, weights)
    config = transformers_config(kind, model_cfg)
    model = MODEL_CLASSES[kind](config)
    state = {new: v for k, v in weights.items() if (new := rename_key(k)) is not None}
    if "feature_projection.projection.weight" not in state:
        # No post_extract_proj when the CNN width equals the model width: the projection is the identity.
        state["feature_projection.projection.weight"] = torch.eye(config.hidden_size)
        state["feature_projection.projection.bias"] = torch.zeros(config.hidden_size)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches between the weights and the config
        raise FileFormatError(f"{kind} checkpoint does not match its config: {err}") from None
    if missing or unexpected:
        raise FileFormatError(
            f"{kind} checkpoint does not match its config: missing {sorted(missing)[:8]}, "
            f"unexpected {sorted(unexpected)[:8]}"
        )
    return model.eval(), bool(task_cfg.get("normalize", False))


def load_original(path: str | Path) -> tuple[PreTrainedModel, bool]:
    """Read a fairseq HuBERT / wav2vec 2.0, unilm WavLM or s3prl-converted ``.pt`` file."""
    ckpt = safe_torch_load(path)
    if not isinstance(ckpt, dict):
        raise FileFormatError(f"{path}: expected a checkpoint dict, got {type(ckpt).__name__}")
    try:
        return model_from_original(ckpt)
    except FileFormatError as err:
        raise FileFormatError(f"{path}: {err}") from None
    except RecursionError:  # a pickle can hold a container that contains itself
        raise FileFormatError(f"{path}: the checkpoint's config nests too deeply (or contains itself)") from None
