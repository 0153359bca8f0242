"""Original fairseq / unilm / s3prl teacher checkpoints -> transformers models, in memory.

Weights are renamed to the transformers layout (no fairseq import), each key by exactly one rule
(``armdistill/keymap.py``; unknown keys are refused); the file is read with the
restricted unpickler, so foreign classes inside it (fairseq dictionaries, omegaconf configs)
become inert stand-ins and any other global is refused before anything runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from transformers import HubertModel, PreTrainedModel, Wav2Vec2Model, WavLMModel

from armdistill.errors import FileFormatError
from armdistill.io.safe_pickle import safe_torch_load
from armdistill.keymap import FAIRSEQ_LAYOUT, KeyMap
from armdistill.teachers.fairseq_config import split_config, transformers_config

MODEL_CLASSES: dict[str, type[PreTrainedModel]] = {"hubert": HubertModel, "wav2vec2": Wav2Vec2Model, "wavlm": WavLMModel}

# The transformers name of each original state-dict key.
ORIGINAL_KEYS = KeyMap("fairseq / unilm / s3prl checkpoint", [
    # quantizer.vars -> dropped (pre-training heads and quantisers the teacher does not use)
    (r"(?:final_proj|label_embs_concat|quantizer|project_q|project_inp|target_glu)(?:\..+)?", None),
    # mask_emb -> masked_spec_embed
    (r"mask_emb", "masked_spec_embed"),
    # encoder.layers.3.self_attn.grep_linear.weight -> encoder.layers.3.attention.gru_rel_pos_linear.weight
    (r"encoder\.layers\.(\d+)\.self_attn\.grep_linear\.(weight|bias)", r"encoder.layers.\1.attention.gru_rel_pos_linear.\2"),
    # encoder.layers.3.self_attn.grep_a -> encoder.layers.3.attention.gru_rel_pos_const
    (r"encoder\.layers\.(\d+)\.self_attn\.grep_a", r"encoder.layers.\1.attention.gru_rel_pos_const"),
    # encoder.layers.0.self_attn.relative_attention_bias.weight -> encoder.layers.0.attention.rel_attn_embed.weight
    (r"encoder\.layers\.(\d+)\.self_attn\.relative_attention_bias\.weight", r"encoder.layers.\1.attention.rel_attn_embed.weight"),
    *FAIRSEQ_LAYOUT,
])


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
    if not isinstance(weights, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in weights.items()):
        raise FileFormatError("expected a state dict of tensors under 'model' (or 'model_weight')")
    return weights


def model_from_original(ckpt: dict[str, Any]) -> tuple[PreTrainedModel, bool]:
    """A loaded checkpoint dict -> (transformers model in eval mode, waveform ``normalize`` flag)."""
    weights = _weights(ckpt)
    model_cfg, task_cfg = split_config(ckpt)
    kind = detect_kind(model_cfg, weights)
    config = transformers_config(kind, model_cfg)
    model = MODEL_CLASSES[kind](config)
    state = {new: v for k, v in weights.items() if (new := ORIGINAL_KEYS.rename(k)) is not None}
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
