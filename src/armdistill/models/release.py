"""Import of the published ARMHuBERT / ARMwavLM / MaskHuBERT Lightning checkpoints.

The ``.ckpt`` holds ``state_dict`` with the student under ``student_model.`` and the teacher
under ``teacher_model.`` (dropped), plus pickled optimiser/scheduler objects of other packages,
which the restricted unpickler turns into inert stand-ins. Imported students run in
``reuse_mode="release"``, the maths they were trained with.
"""

from __future__ import annotations

import re
from pathlib import Path

from torch import Tensor

from armdistill.errors import FileFormatError
from armdistill.io.safe_pickle import safe_torch_load
from armdistill.models.config import preset_config
from armdistill.models.student import Student

RELEASE_PRESETS = ("armhubert", "armhubert-s", "maskhubert")
STUDENT_PREFIX = "student_model."

# (release key pattern, our key template); applied to keys without the student prefix.
_RENAMES: list[tuple[str, str]] = [
    (r"mask_emb", "mask_embedding"),
    (r"feature_extractor\.conv_layers\.(\d+)\.0\.(weight|bias)", r"feature_extractor.conv_layers.\1.conv.\2"),
    (r"feature_extractor\.conv_layers\.0\.2\.(weight|bias)", r"feature_extractor.conv_layers.0.layer_norm.\1"),
    (r"layer_norm\.(weight|bias)", r"feature_projection.layer_norm.\1"),
    (r"post_extract_proj\.(weight|bias)", r"feature_projection.projection.\1"),
    (r"encoder\.pos_conv\.0\.weight_g", "encoder.pos_conv_embed.conv.parametrizations.weight.original0"),
    (r"encoder\.pos_conv\.0\.weight_v", "encoder.pos_conv_embed.conv.parametrizations.weight.original1"),
    (r"encoder\.pos_conv\.0\.bias", "encoder.pos_conv_embed.conv.bias"),
    (r"encoder\.layer_norm\.(weight|bias)", r"encoder.layer_norm.\1"),
    (r"encoder\.layers\.(\d+)\.self_attn\.(q|k|v|out)_proj\.(weight|bias)", r"encoder.layers.\1.attention.\2_proj.\3"),
    (r"encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)", r"encoder.layers.\1.layer_norm.\2"),
    (r"encoder\.layers\.(\d+)\.fc1\.(weight|bias)", r"encoder.layers.\1.feed_forward.intermediate_dense.\2"),
    (r"encoder\.layers\.(\d+)\.fc2\.(weight|bias)", r"encoder.layers.\1.feed_forward.output_dense.\2"),
    (r"encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", r"encoder.layers.\1.final_layer_norm.\2"),
    (r"proj_head\.(\d+)\.lin_proj\.(weight|bias)", r"heads.\1.\2"),
]


def rename_release_key(key: str) -> str | None:
    """Our name for a key of the released student; None when the key is not one of the release's."""
    for pattern, template in _RENAMES:
        if re.fullmatch(pattern, key):
            return re.sub(pattern, template, key)
    return None


def read_release_state(path: str | Path) -> dict[str, Tensor]:
    """The student's tensors from a released ``.ckpt``, renamed to our layout."""
    ckpt = safe_torch_load(path)
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise FileFormatError(f"{path}: expected a Lightning checkpoint with a 'state_dict' mapping")
    student = {k[len(STUDENT_PREFIX):]: v for k, v in state.items() if isinstance(k, str) and k.startswith(STUDENT_PREFIX)}
    if not student:
        raise FileFormatError(f"{path}: no '{STUDENT_PREFIX}*' keys; is this a released distillation checkpoint?")
    if not all(isinstance(v, Tensor) for v in student.values()):
        raise FileFormatError(f"{path}: the '{STUDENT_PREFIX}*' entries of 'state_dict' are not all tensors")
    renamed = {k: rename_release_key(k) for k in student}
    unknown = sorted(k for k, new in renamed.items() if new is None)
    if unknown:
        raise FileFormatError(f"{path}: unrecognised key(s) in the released student: {unknown[:3]}")
    return {renamed[k]: v for k, v in student.items()}


def _shape_mismatches(model: Student, state: dict[str, Tensor]) -> list[str]:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    problems = [f"missing {k}" for k in expected if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in expected]
    problems += [
        f"{k}: shape {tuple(v.shape)} != {expected[k]}" for k, v in state.items() if k in expected and tuple(v.shape) != expected[k]
    ]
    return problems


def import_release(path: str | Path, preset: str | None = None) -> Student:
    """Build a ``release``-mode student from a released checkpoint (preset inferred from shapes)."""
    state = read_release_state(path)
    candidates = [preset] if preset else list(RELEASE_PRESETS)
    report = {}
    for name in candidates:
        model = Student(preset_config(name, reuse_mode="release"))
        problems = _shape_mismatches(model, state)
        if not problems:
            model.load_state_dict(state)
            return model
        report[name] = problems[:3]
    raise FileFormatError(f"{path}: the student's tensors match no preset {candidates}; first differences: {report}")
