"""Reading fairseq / unilm / s3prl teacher configs without fairseq or omegaconf.

Configs arrive as plain dicts (fairseq saves ``OmegaConf.to_container(cfg)``), ``argparse.Namespace``
(legacy ``args``), with fairseq enum values as inert stand-ins (see :mod:`armdistill.io.safe_pickle`);
:func:`plain` turns all of them into plain Python. :func:`transformers_config` maps the fields onto a transformers config.
"""

from __future__ import annotations

import argparse
import ast
from typing import Any

from transformers import HubertConfig, PretrainedConfig, Wav2Vec2Config, WavLMConfig

from armdistill.errors import FileFormatError
from armdistill.io.safe_pickle import StandIn

# fairseq's HuBERT / wav2vec 2.0 / WavLM defaults, used where a legacy config omits a field.
DEFAULT_CONV_LAYERS = "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2"
_DEFAULTS: dict[str, Any] = {
    "conv_feature_layers": DEFAULT_CONV_LAYERS,
    "extractor_mode": "default",
    "conv_bias": False,
    "encoder_layers": 12,
    "encoder_embed_dim": 768,
    "encoder_ffn_embed_dim": 3072,
    "encoder_attention_heads": 12,
    "activation_fn": "gelu",
    "layer_norm_first": False,
    "conv_pos": 128,
    "conv_pos_groups": 16,
    "dropout": 0.1,
    "attention_dropout": 0.1,
    "activation_dropout": 0.0,
    "dropout_input": 0.0,
    "mask_prob": 0.65,
    "mask_length": 10,
    "num_buckets": 320,
    "max_distance": 800,
}
CONFIG_CLASSES: dict[str, type[PretrainedConfig]] = {
    "hubert": HubertConfig,
    "wav2vec2": Wav2Vec2Config,
    "wavlm": WavLMConfig,
}


def parse_conv_layers(spec: str) -> list[tuple[int, int, int]]:
    """Parse fairseq's ``conv_feature_layers`` string, e.g. ``"[(512,10,5)] + [(512,3,2)] * 4"``.

    Only list / tuple / int literals, ``+`` and ``*`` are accepted; nothing is evaluated.
    Returns ``[(channels, kernel, stride), ...]``.
    """
    try:
        tree = ast.parse(spec.strip(), mode="eval")
    except SyntaxError as err:
        raise FileFormatError(f"conv_feature_layers {spec!r} is not a list expression: {err.msg}") from None
    value = _literal(tree.body, spec)
    if not isinstance(value, list) or not value:
        raise FileFormatError(f"conv_feature_layers {spec!r}: expected a non-empty list of (channels, kernel, stride)")
    for item in value:
        if not (isinstance(item, tuple) and len(item) == 3 and all(isinstance(v, int) and v > 0 for v in item)):
            raise FileFormatError(f"conv_feature_layers {spec!r}: {item!r} is not a (channels, kernel, stride) triple")
    return value


def _literal(node: ast.AST, spec: str) -> Any:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.List):
        return [_literal(e, spec) for e in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_literal(e, spec) for e in node.elts)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
        left, right = _literal(node.left, spec), _literal(node.right, spec)
        if isinstance(node.op, ast.Add) and isinstance(left, list) and isinstance(right, list):
            return left + right
        if isinstance(node.op, ast.Mult) and isinstance(left, list) and isinstance(right, int):
            return left * right
        if isinstance(node.op, ast.Mult) and isinstance(left, int) and isinstance(right, list):
            return right * left
        raise FileFormatError(f"conv_feature_layers {spec!r}: unsupported operands {left!r}, {right!r}")
    raise FileFormatError(f"conv_feature_layers {spec!r}: {type(node).__name__} is not allowed (list/tuple/int, + and * only)")


def plain(obj: Any) -> Any:
    """Plain dicts / lists / scalars from configs holding Namespaces or enum / object stand-ins."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, argparse.Namespace):
        return plain(vars(obj))
    if isinstance(obj, StandIn):
        state, args = obj.__dict__["_state"], obj.__dict__["_args"]
        if state is None and len(args) == 1:  # an Enum member (fairseq ChoiceEnum) pickled by value
            return plain(args[0])
        if isinstance(state, dict):
            return plain(state)
        raise FileFormatError(f"cannot read config value {obj!r}")
    return obj


def split_config(ckpt: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model config, task config) of a fairseq ``{cfg | args}``, unilm ``{cfg}`` or s3prl checkpoint."""
    if "model_cfg" in ckpt:  # s3prl conversion
        return plain(ckpt["model_cfg"]) or {}, plain(ckpt.get("task_cfg")) or {}
    cfg = plain(ckpt.get("cfg"))
    if isinstance(cfg, dict) and isinstance(cfg.get("model"), dict):
        return cfg["model"], cfg.get("task") or {}
    if isinstance(cfg, dict):  # unilm WavLM: one flat model config that also holds `normalize`
        return cfg, cfg
    args = plain(ckpt.get("args"))
    if isinstance(args, dict):  # legacy fairseq: one namespace for model and task
        return args, args
    raise FileFormatError("no model config found (expected 'cfg', 'args' or 'model_cfg')")


def _get(cfg: dict[str, Any], key: str) -> Any:
    value = cfg.get(key)
    return _DEFAULTS[key] if value is None else value


def transformers_config(kind: str, model_cfg: dict[str, Any]) -> PretrainedConfig:
    """The transformers config of a fairseq-family model config; layer drop off (frozen teachers)."""
    if kind not in CONFIG_CLASSES:
        raise FileFormatError(f"unsupported teacher kind {kind!r}; expected one of {sorted(CONFIG_CLASSES)}")
    if model_cfg.get("layer_type", "transformer") != "transformer":
        raise FileFormatError(f"layer_type {model_cfg['layer_type']!r} is not supported (plain Transformer layers only)")
    if (model_cfg.get("pos_conv_depth") or 1) != 1:
        raise FileFormatError(f"pos_conv_depth {model_cfg['pos_conv_depth']} is not supported (one positional conv only)")
    if kind == "wavlm" and model_cfg.get("relative_position_embedding") is False:
        raise FileFormatError("WavLM configs without relative_position_embedding are not supported")
    mode = _get(model_cfg, "extractor_mode")
    if mode not in ("default", "layer_norm"):
        raise FileFormatError(f"extractor_mode {mode!r}: expected 'default' or 'layer_norm'")
    conv = parse_conv_layers(_get(model_cfg, "conv_feature_layers"))
    mask_prob = float(_get(model_cfg, "mask_prob"))
    fields: dict[str, Any] = dict(
        conv_dim=[c for c, _, _ in conv],
        conv_kernel=[k for _, k, _ in conv],
        conv_stride=[s for _, _, s in conv],
        feat_extract_norm="group" if mode == "default" else "layer",
        conv_bias=bool(_get(model_cfg, "conv_bias")),
        hidden_size=int(_get(model_cfg, "encoder_embed_dim")),
        num_hidden_layers=int(_get(model_cfg, "encoder_layers")),
        num_attention_heads=int(_get(model_cfg, "encoder_attention_heads")),
        intermediate_size=int(_get(model_cfg, "encoder_ffn_embed_dim")),
        hidden_act=_get(model_cfg, "activation_fn"),
        do_stable_layer_norm=bool(_get(model_cfg, "layer_norm_first")),
        num_conv_pos_embeddings=int(_get(model_cfg, "conv_pos")),
        num_conv_pos_embedding_groups=int(_get(model_cfg, "conv_pos_groups")),
        hidden_dropout=float(_get(model_cfg, "dropout")),
        attention_dropout=float(_get(model_cfg, "attention_dropout")),
        activation_dropout=float(_get(model_cfg, "activation_dropout")),
        feat_proj_dropout=float(_get(model_cfg, "dropout_input")),
        layerdrop=0.0,
        layer_norm_eps=1e-5,
        # transformers only creates the mask embedding when mask_time_prob > 0.
        mask_time_prob=mask_prob if mask_prob > 0 else 0.05,
        mask_time_length=int(_get(model_cfg, "mask_length")),
    )
    if kind == "wavlm":
        fields.update(num_buckets=int(_get(model_cfg, "num_buckets")), max_bucket_distance=int(_get(model_cfg, "max_distance")))
    return CONFIG_CLASSES[kind](**fields)
