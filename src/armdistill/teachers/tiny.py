"""Random-weight transformers teachers: tiny ones for tests and demos, Base-shaped ones for benchmarks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import (
    Data2VecAudioConfig,
    Data2VecAudioModel,
    HubertConfig,
    HubertModel,
    PretrainedConfig,
    PreTrainedModel,
    Wav2Vec2Config,
    Wav2Vec2Model,
    WavLMConfig,
    WavLMModel,
)

from armdistill.teachers.teacher import Teacher

KINDS: dict[str, tuple[type[PretrainedConfig], type[PreTrainedModel]]] = {
    "hubert": (HubertConfig, HubertModel),
    "wavlm": (WavLMConfig, WavLMModel),
    "wav2vec2": (Wav2Vec2Config, Wav2Vec2Model),
    "data2vec-audio": (Data2VecAudioConfig, Data2VecAudioModel),
}

# HuBERT Base's kernels and strides (total stride 320, so frames align with students), narrow.
TINY_CONFIG: dict[str, Any] = dict(
    conv_dim=[32] * 7,
    conv_kernel=[10, 3, 3, 3, 3, 2, 2],
    conv_stride=[5, 2, 2, 2, 2, 2, 2],
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
    layerdrop=0.0,
    mask_time_prob=0.05,
)


def make_random_model(kind: str = "hubert", seed: int = 0, **config: Any) -> PreTrainedModel:
    """A random-weight transformers speech model (eval mode); ``config`` overrides the tiny defaults.

    For ``data2vec-audio``, ``num_conv_pos_embeddings`` is the number of stacked positional convs.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown teacher kind {kind!r}; expected one of {sorted(KINDS)}")
    config_cls, model_cls = KINDS[kind]
    fields = {**TINY_CONFIG, **({"num_conv_pos_embeddings": 2, "conv_pos_kernel_size": 7} if kind == "data2vec-audio" else {}), **config}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model_cls(config_cls(**fields)).eval()


def make_base_model(kind: str = "hubert", seed: int = 0) -> PreTrainedModel:
    """A random-weight model of transformers' default (Base) shape: 768-d, 12 layers, 512-channel
    CNN; eval mode, no layer drop."""
    if kind not in KINDS:
        raise ValueError(f"unknown teacher kind {kind!r}; expected one of {sorted(KINDS)}")
    config_cls, model_cls = KINDS[kind]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model_cls(config_cls(layerdrop=0.0)).eval()


def make_random_teacher(out_dir: str | Path, kind: str = "hubert", normalize: bool = False, seed: int = 0, **config: Any) -> Path:
    """Save a tiny random teacher as a transformers directory loadable by ``Teacher.from_pretrained``."""
    Teacher(make_random_model(kind, seed, **config), normalize=normalize).save_pretrained(out_dir)
    return Path(out_dir)


def hubert_base(seed: int = 0) -> Teacher:
    """A random-weight teacher of HuBERT Base's shape (transformers' ``HubertConfig`` defaults: 12 layers
    of 768, 94.4M parameters), to compare speed and MACs against without downloading a checkpoint."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Teacher(HubertModel(HubertConfig(layerdrop=0.0)))


# Teachers of a published shape that ``armdistill bench`` / ``analyze-attention`` accept by name.
RANDOM_TEACHERS = {"hubert-base": hubert_base}
