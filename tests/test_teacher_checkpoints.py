"""Original fairseq / unilm / s3prl teacher checkpoints, written from random transformers models."""

from __future__ import annotations

import argparse
import enum
import os
import pickle
import re
import sys
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import HubertConfig, HubertModel, Wav2Vec2Config, Wav2Vec2Model, WavLMConfig, WavLMModel

from _transformers_parity import assert_matches_transformers, max_diff

from armdistill.io.safe_pickle import UnsafeCheckpointError
from armdistill.teachers import Teacher
from armdistill.teachers.commands import register
from armdistill.teachers.fairseq_config import parse_conv_layers

TINY = dict(
    conv_kernel=[10, 3, 3, 3, 3, 2, 2], conv_stride=[5, 2, 2, 2, 2, 2, 2], hidden_size=32, num_hidden_layers=2,
    num_attention_heads=2, intermediate_size=64, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
    mask_time_prob=0.05,
)


def _fairseq_model_cfg(name: str | None, conv_dim: int, **extra) -> dict:
    return dict(
        _name=name, conv_feature_layers=f"[({conv_dim}, 10, 5)] + [({conv_dim}, 3, 2)] * 4 + [({conv_dim}, 2, 2)] * 2",
        encoder_layers=2, encoder_embed_dim=32, encoder_ffn_embed_dim=64, encoder_attention_heads=2,
        conv_pos=16, conv_pos_groups=4, conv_bias=False, activation_fn="gelu", mask_prob=0.8, **extra,
    )


# transformers name -> original name, written independently of the converter under test.
_TO_ORIGINAL = [
    (r"^feature_extractor\.conv_layers\.(\d+)\.conv\.", r"feature_extractor.conv_layers.\1.0."),
    (r"^feature_projection\.layer_norm\.", "layer_norm."),
    (r"^feature_projection\.projection\.", "post_extract_proj."),
    (r"^masked_spec_embed$", "mask_emb"),
    (r"^encoder\.pos_conv_embed\.conv\.parametrizations\.weight\.original0$", "encoder.pos_conv.0.weight_g"),
    (r"^encoder\.pos_conv_embed\.conv\.parametrizations\.weight\.original1$", "encoder.pos_conv.0.weight_v"),
    (r"^encoder\.pos_conv_embed\.conv\.bias$", "encoder.pos_conv.0.bias"),
    (r"\.attention\.gru_rel_pos_linear\.", ".self_attn.grep_linear."),
    (r"\.attention\.gru_rel_pos_const$", ".self_attn.grep_a"),
    (r"\.attention\.rel_attn_embed\.", ".self_attn.relative_attention_bias."),
    (r"\.attention\.", ".self_attn."),
    (r"^(encoder\.layers\.\d+)\.layer_norm\.", r"\1.self_attn_layer_norm."),
    (r"\.feed_forward\.intermediate_dense\.", ".fc1."),
    (r"\.feed_forward\.output_dense\.", ".fc2."),
]


def to_original(model: torch.nn.Module, cnn_layer_norm: bool = False, drop_projection: bool = False) -> dict:
    out = {}
    for key, value in model.state_dict().items():
        if drop_projection and key.startswith("feature_projection.projection."):
            continue
        norm = re.match(r"^feature_extractor\.conv_layers\.(\d+)\.layer_norm\.(.*)$", key)
        if norm:
            key = f"feature_extractor.conv_layers.{norm[1]}.2.{'1.' if cnn_layer_norm else ''}{norm[2]}"
        for pattern, repl in _TO_ORIGINAL:
            key = re.sub(pattern, repl, key)
        out[key] = value.clone()
    return out


def _foreign(module_name: str, cls: type) -> type:
    """Give ``cls`` a home in a temporary fake module so pickle records ``module_name.Name``."""
    cls.__module__, cls.__qualname__ = module_name, cls.__name__
    return cls


def save_with_foreign_classes(obj: dict, path: Path, module_name: str, *classes: type) -> None:
    parts = module_name.split(".")
    names = [".".join(parts[: i + 1]) for i in range(len(parts))]
    for name in names:
        sys.modules[name] = types.ModuleType(name)
    for cls in classes:
        setattr(sys.modules[module_name], cls.__name__, cls)
    try:
        torch.save(obj, path)
    finally:
        for name in names:
            del sys.modules[name]


def _wav(batch: int = 2, samples: int = 5000, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, samples, generator=torch.Generator().manual_seed(seed))


def _assert_reproduces(teacher: Teacher, source: torch.nn.Module, normalize: bool) -> None:
    wav = 2.0 * _wav() + 0.3
    mask = torch.zeros(2, 15, dtype=torch.bool)
    mask[0, 3:10] = mask[1, 8:15] = True
    source_input = F.layer_norm(wav, wav.shape[-1:]) if normalize else wav
    with torch.no_grad():
        plain = source(source_input, output_hidden_states=True)
        masked = source(source_input, mask_time_indices=mask, output_hidden_states=True)
    assert teacher.normalize is normalize
    assert_matches_transformers(teacher.layer_outputs(wav).hidden_states, plain, source)
    assert_matches_transformers(teacher.layer_outputs(wav, mask=mask).hidden_states, masked, source)


def _source(config_cls, model_cls, seed: int, **config) -> torch.nn.Module:
    torch.manual_seed(seed)
    return model_cls(config_cls(**TINY, **config)).eval()


def test_fairseq_hubert_cfg_checkpoint_with_pickled_fairseq_objects(tmp_path):
    source = _source(HubertConfig, HubertModel, 0, conv_dim=[16] * 7)

    class Dictionary:
        def __init__(self):
            self.symbols = ["<s>", "<pad>", "</s>", "<unk>", "0", "1"]

    class ChoiceEnum(str, enum.Enum):
        DEFAULT = "default"
        LAYER_NORM = "layer_norm"

        def __reduce_ex__(self, protocol: int) -> tuple:
            # As the Pythons that wrote fairseq's checkpoints pickle a member (some newer ones
            # name it through builtins.getattr instead).
            return type(self), (self.value,)

    _foreign("fairseq.data.dictionary", Dictionary)
    _foreign("fairseq.data.dictionary", ChoiceEnum)
    weights = to_original(source)
    weights["final_proj.weight"], weights["label_embs_concat"] = torch.randn(8, 32), torch.randn(6, 8)
    ckpt = {
        "args": None,
        "cfg": {
            "model": _fairseq_model_cfg("hubert", 16, extractor_mode=ChoiceEnum.DEFAULT, layer_norm_first=False),
            "task": {"_name": "hubert_pretraining", "normalize": False, "labels": ["km"]},
        },
        "model": weights,
        "task_state": {"dictionaries": [Dictionary()]},
    }
    path = tmp_path / "hubert_base.pt"
    save_with_foreign_classes(ckpt, path, "fairseq.data.dictionary", Dictionary, ChoiceEnum)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    teacher = Teacher.from_pretrained(path)
    assert type(teacher.model) is HubertModel and teacher.num_layers == 2 and teacher.downsample == 320
    _assert_reproduces(teacher, source, normalize=False)


def test_legacy_args_pre_ln_layer_norm_cnn_without_projection(tmp_path):
    # CNN width == model width: fairseq has no post_extract_proj, so the projection is the identity.
    source = _source(HubertConfig, HubertModel, 1, conv_dim=[32] * 7, do_stable_layer_norm=True, feat_extract_norm="layer")
    with torch.no_grad():
        source.feature_projection.projection.weight.copy_(torch.eye(32))
        source.feature_projection.projection.bias.zero_()
    args = argparse.Namespace(
        arch="hubert", normalize=True, **_fairseq_model_cfg(None, 32, extractor_mode="layer_norm", layer_norm_first=True)
    )
    del args._name
    path = tmp_path / "hubert_large.pt"
    torch.save({"args": args, "model": to_original(source, cnn_layer_norm=True, drop_projection=True)}, path)
    teacher = Teacher.from_pretrained(path)
    assert teacher.model.config.do_stable_layer_norm and teacher.model.config.feat_extract_norm == "layer"
    _assert_reproduces(teacher, source, normalize=True)
    assert Teacher.from_pretrained(path, normalize=False).normalize is False


@pytest.mark.parametrize("normalize", [False, True])
def test_unilm_wavlm_checkpoint(tmp_path, normalize):
    source = _source(WavLMConfig, WavLMModel, 2, conv_dim=[16] * 7)
    cfg = _fairseq_model_cfg(
        None, 16, extractor_mode="default", layer_norm_first=False, normalize=normalize,
        relative_position_embedding=True, num_buckets=320, max_distance=800, gru_rel_pos=True,
    )
    del cfg["_name"]
    path = tmp_path / "WavLM-Base.pt"
    torch.save({"cfg": cfg, "model": to_original(source)}, path)
    teacher = Teacher.from_pretrained(path)
    assert type(teacher.model) is WavLMModel
    _assert_reproduces(teacher, source, normalize=normalize)


def test_s3prl_converted_wav2vec2_checkpoint(tmp_path):
    source = _source(Wav2Vec2Config, Wav2Vec2Model, 3, conv_dim=[16] * 7)
    weights = to_original(source)
    weights["quantizer.vars"], weights["project_q.weight"] = torch.randn(1, 8, 4), torch.randn(4, 4)
    path = tmp_path / "wav2vec2_converted.pt"
    torch.save(
        {"task_cfg": {"normalize": False}, "model_cfg": _fairseq_model_cfg("wav2vec2", 16, extractor_mode="default"),
         "model_weight": weights},
        path,
    )
    teacher = Teacher.from_pretrained(path)
    assert type(teacher.model) is Wav2Vec2Model
    _assert_reproduces(teacher, source, normalize=False)


def test_convert_teacher_command_writes_a_reloadable_directory(tmp_path, capsys):
    source = _source(WavLMConfig, WavLMModel, 4, conv_dim=[16] * 7)
    cfg = _fairseq_model_cfg(None, 16, normalize=True)
    del cfg["_name"]
    src = tmp_path / "wavlm.pt"
    torch.save({"cfg": cfg, "model": to_original(source)}, src)
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["convert-teacher", str(src), str(tmp_path / "out")])
    assert args.func(args) == 0
    original, converted = Teacher.from_pretrained(src), Teacher.from_pretrained(tmp_path / "out")
    assert converted.normalize is True
    assert converted.fingerprint() == original.fingerprint()
    assert converted.fingerprint() in capsys.readouterr().out
    wav, lengths = _wav(seed=5), torch.tensor([5000, 3100])
    assert max_diff(converted.layer_outputs(wav, lengths).hidden_states, original.layer_outputs(wav, lengths).hidden_states) == 0.0


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_hostile_pickle_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"cfg": {}, "model": {"w": torch.zeros(1)}, "extra": _Exploit(marker)}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"(posix|os)\.system") as info:
        Teacher.from_pretrained(path)
    assert str(path) in str(info.value)
    assert not marker.exists()


def test_mismatched_checkpoint_names_file_and_keys(tmp_path):
    source = _source(HubertConfig, HubertModel, 5, conv_dim=[16] * 7)
    weights = to_original(source)
    del weights["encoder.layers.1.fc2.weight"]
    path = tmp_path / "broken.pt"
    torch.save({"cfg": {"model": _fairseq_model_cfg("hubert", 16), "task": {}}, "model": weights}, path)
    with pytest.raises(ValueError, match=r"broken\.pt.*missing.*encoder\.layers\.1\.feed_forward\.output_dense\.weight"):
        Teacher.from_pretrained(path)


def test_conv_feature_layers_parser_accepts_literals_only():
    layers = parse_conv_layers("[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] * 2")
    assert layers == [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2
    assert parse_conv_layers("2 * [(64, 3, 2)]") == [(64, 3, 2), (64, 3, 2)]
    for bad, reason in [
        ("__import__('os').system('true')", "Call is not allowed"),
        ("[(512, 10, 5)] * n", "Name is not allowed"),
        ("[(512, 10)]", "not a \\(channels, kernel, stride\\) triple"),
        ("[(512, 10, 5)] - [(1, 1, 1)]", "BinOp is not allowed"),
        ("[(512, 10, 5.0)]", "Constant is not allowed"),
        ("[(512, 10, 5)", "not a list expression"),
    ]:
        with pytest.raises(ValueError, match=reason):
            parse_conv_layers(bad)
