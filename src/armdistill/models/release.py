"""Import of the published ARMHuBERT / ARMwavLM / MaskHuBERT Lightning checkpoints.

The ``.ckpt`` holds ``state_dict`` with the student under ``student_model.`` and the teacher
under ``teacher_model.`` (dropped), plus pickled optimiser/scheduler objects of other packages,
which the restricted unpickler turns into inert stand-ins. Imported students run in
``reuse_mode="release"``, the maths they were trained with.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from armdistill.errors import FileFormatError
from armdistill.io.safe_pickle import safe_torch_load
from armdistill.keymap import FAIRSEQ_LAYOUT, KeyMap
from armdistill.models.config import preset_config
from armdistill.models.student import Student

RELEASE_PRESETS = ("armhubert", "armhubert-s", "maskhubert")
STUDENT_PREFIX = "student_model."

# Applied to keys without the student prefix; the rest of the layout is fairseq's.
RELEASE_KEYS = KeyMap("released student", [
    # mask_emb -> mask_embedding
    (r"mask_emb", "mask_embedding"),
    # proj_head.3.lin_proj.weight -> heads.3.weight
    (r"proj_head\.(\d+)\.lin_proj\.(weight|bias)", r"heads.\1.\2"),
    *FAIRSEQ_LAYOUT,
])


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
    try:
        return {RELEASE_KEYS.rename(k): v for k, v in student.items()}
    except FileFormatError as err:
        raise FileFormatError(f"{path}: {err}") from None


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
