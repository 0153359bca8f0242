"""A student exported for transformers (``armdistill export --format hf``): its weights' layout.

``config.json`` carries the whole :class:`StudentConfig` under ``STUDENT_KEY``. The backbone's
weights are in ``model.safetensors``: under transformers' ``HubertModel`` names for a native
export (the mask embedding is ``masked_spec_embed``; an identity feature projection stands where
the student has none), or under ours behind the ``student.`` prefix of the generated
``ArmdistillModel`` (``model_type`` ``armdistill``). The projection heads, which transformers'
classes have no place for, are in ``heads.safetensors`` under our names.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor

from armdistill.errors import FileFormatError
from armdistill.models.config import StudentConfig
from armdistill.models.export_layout import HEADS_WEIGHTS, REMOTE_MODEL_TYPE, REMOTE_PREFIX, STUDENT_KEY

HEADS_PREFIX = "heads."
# our name -> transformers' name, where they differ
HF_NAMES = {"mask_embedding": "masked_spec_embed"}
PROJECTION = ("feature_projection.projection.weight", "feature_projection.projection.bias")


def transformers_config(cfg: StudentConfig) -> StudentConfig:
    """The student as the transformers classes hold it: without its projection heads, and without
    the gradient scaling of distillation (outputs are unchanged; fine-tuning trains it plainly)."""
    return cfg.replace(proj_dim=None, head_inputs=None, grad_scale=False, feature_grad_mult=1.0)


def split_heads(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Our state dict -> (backbone tensors, projection-head tensors)."""
    heads = {k: v for k, v in state.items() if k.startswith(HEADS_PREFIX)}
    return {k: v for k, v in state.items() if k not in heads}, heads


def from_hf_names(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A transformers wav2vec2-family state dict under our names (the layouts agree elsewhere)."""
    ours = {hf: name for name, hf in HF_NAMES.items()}
    return {ours.get(k, k): v for k, v in state.items()}


def to_hf_names(backbone: dict[str, Tensor], cfg: StudentConfig) -> dict[str, Tensor]:
    """Our backbone tensors as a ``HubertModel`` state dict."""
    state = {HF_NAMES.get(k, k): v for k, v in backbone.items()}
    if cfg.conv_dim == cfg.dim:
        state[PROJECTION[0]] = torch.eye(cfg.dim)
        state[PROJECTION[1]] = torch.zeros(cfg.dim)
    return state


def is_export(config: dict) -> bool:
    """Whether a ``config.json`` (as a dict) is that of an export."""
    return STUDENT_KEY in config


def read_export(directory: Path, config: dict, weights: Path) -> tuple[dict, dict[str, Tensor]]:
    """The StudentConfig (as a dict) and our state dict of an export whose ``config.json`` is ``config``."""
    data = config[STUDENT_KEY]
    if not isinstance(data, dict):
        raise FileFormatError(f"{directory / 'config.json'}: {STUDENT_KEY}: expected an object, got {data!r}")
    state = load_file(str(weights))
    if config.get("model_type") == REMOTE_MODEL_TYPE:
        state = {k.removeprefix(REMOTE_PREFIX): v for k, v in state.items()}
    else:
        state = from_hf_names(state)
        cfg = StudentConfig.from_dict(data)
        if cfg.conv_dim == cfg.dim:
            weight, bias = (state.pop(k, None) for k in PROJECTION)
            if weight is None or bias is None or not torch.equal(weight, torch.eye(cfg.dim)) or bias.any():
                raise FileFormatError(
                    f"{weights}: {PROJECTION[0]}: expected the identity the export wrote (this student has no "
                    "feature projection); weights changed in transformers cannot be read back as a student"
                )
    if data.get("proj_dim") is not None:
        heads_path = directory / HEADS_WEIGHTS
        if not heads_path.is_file():
            raise FileFormatError(f"{heads_path}: missing; the config has projection heads (proj_dim is set)")
        state.update(load_file(str(heads_path)))
    return data, state
