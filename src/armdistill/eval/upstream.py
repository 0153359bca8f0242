"""Frozen upstreams for probing: a student, a teacher, or an MFCC / fbank baseline.

Every upstream maps one utterance to a stack of 50 Hz feature sequences
``[layers, frames, dim]`` (layer 0 = encoder input for models) and names itself with a
fingerprint that changes whenever its features could change, which keys the feature cache.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Literal, get_args

import torch
from torch import Tensor, nn

from armdistill.config import to_dict
from armdistill.eval.features import BASELINES, baseline_features
from armdistill.io.digest import weights_digest
from armdistill.models.config import PRESETS
from armdistill.models.student import CONFIG_NAME, Student

StudentFeatures = Literal["hidden", "projections"]
STUDENT_FEATURES: tuple[StudentFeatures, ...] = get_args(StudentFeatures)
# Bump when the baseline recipe in features.py changes, so stale cached features are not reused.
BASELINE_VERSION = "1"


class Upstream(ABC):
    """A frozen feature extractor; ``extract(wav [samples]) -> [layers, frames, dim]``."""

    name: str
    layer_names: list[str]

    @abstractmethod
    def fingerprint(self) -> str:
        """A stable id of everything that determines the features."""

    @abstractmethod
    def extract(self, wav: Tensor) -> Tensor:
        """wav ``[samples]`` at 16 kHz -> ``[layers, frames, dim]`` float."""


class BaselineUpstream(Upstream):
    """MFCC / fbank features as a single 'layer'."""

    def __init__(self, name: str):
        if name not in BASELINES:
            raise ValueError(f"unknown baseline {name!r}; expected one of {list(BASELINES)}")
        self.name = name
        self.layer_names = [name]

    def fingerprint(self) -> str:
        return f"baseline:{self.name}:v{BASELINE_VERSION}"

    def extract(self, wav: Tensor) -> Tensor:
        return baseline_features(self.name, wav)[None]


class StudentUpstream(Upstream):
    """A student's raw layer outputs (``hidden``: encoder input + every layer) or its
    projection-head outputs (``projections``: one per layer)."""

    def __init__(self, student: Student, features: StudentFeatures = "hidden", name: str = "student"):
        if features not in STUDENT_FEATURES:
            raise ValueError(f"student features: {features!r} is not one of {list(STUDENT_FEATURES)}")
        if features == "projections" and student.heads is None:
            raise ValueError(f"{name}: student has no projection heads (proj_dim is null); use 'hidden'")
        self.student = student.eval().requires_grad_(False)
        self.features = features
        self.name = name
        n = student.config.num_layers
        self.layer_names = (
            ["input"] + [f"layer {i + 1}" for i in range(n)]
            if features == "hidden"
            else [f"head {i + 1}" for i in range(n)]
        )
        self._fingerprint: str | None = None

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            config = json.dumps(to_dict(self.student.config), sort_keys=True)
            digest = hashlib.sha256(f"{config}|{weights_digest(self.student)}".encode()).hexdigest()
            self._fingerprint = f"student:{self.features}:{digest}"
        return self._fingerprint

    @torch.inference_mode()
    def extract(self, wav: Tensor) -> Tensor:
        self.student.eval()
        out = self.student(wav[None].float(), torch.tensor([wav.shape[0]]))
        states = out.hidden_states if self.features == "hidden" else out.projections
        return torch.stack(states)[:, 0].float()


class TeacherUpstream(Upstream):
    """A teacher's encoder input and every layer output (``TeacherOutput.hidden_states``)."""

    def __init__(self, teacher: nn.Module, name: str = "teacher"):
        self.teacher = teacher.eval()
        self.name = name
        self.layer_names = ["input"] + [f"layer {i + 1}" for i in range(teacher.num_layers)]

    def fingerprint(self) -> str:
        return f"teacher:normalize={self.teacher.normalize}:{self.teacher.fingerprint()}"

    @torch.inference_mode()
    def extract(self, wav: Tensor) -> Tensor:
        out = self.teacher.layer_outputs(wav[None].float(), torch.tensor([wav.shape[0]]))
        return torch.stack(out.hidden_states)[:, 0].float()


def is_student_dir(path: Path) -> bool:
    config = path / CONFIG_NAME
    if not config.is_file():
        return False
    try:
        data = json.loads(config.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and "reuse_pattern" in data and "conv_layers" in data


def load_upstream(spec: str | Path, student_features: StudentFeatures = "hidden", seed: int = 0) -> Upstream:
    """Resolve an upstream from its command-line spelling.

    ``mfcc`` / ``mfcc-context`` / ``fbank``: baselines; a directory written by
    ``Student.save_pretrained``: that student; a student preset name (or ``preset:NAME``):
    a randomly initialised student seeded by ``seed`` (an untrained reference point);
    ``teacher:SRC`` or anything else: ``Teacher.from_pretrained(SRC)``.
    """
    text = str(spec)
    if text in BASELINES:
        return BaselineUpstream(text)
    if text.startswith("preset:") or text in PRESETS:
        preset = text.removeprefix("preset:")
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            student = Student.from_preset(preset)
        return StudentUpstream(student, student_features, name=f"{preset} (random init, seed {seed})")
    path = Path(text)
    if path.is_dir() and is_student_dir(path):
        return StudentUpstream(Student.from_pretrained(path), student_features, name=str(path))
    source = text.removeprefix("teacher:")
    try:
        from armdistill.teachers import Teacher
    except ImportError as err:
        raise ValueError(f"upstream {text!r}: not a baseline, preset or student directory, "
                         f"and teachers cannot be loaded: {err}") from None
    return TeacherUpstream(Teacher.from_pretrained(source), name=source)


def as_upstream(obj: Upstream | Student | nn.Module | str | Path, student_features: StudentFeatures = "hidden",
                seed: int = 0) -> Upstream:
    """Accept a spec string, an :class:`Upstream`, a :class:`Student` or a teacher module."""
    if isinstance(obj, Upstream):
        return obj
    if isinstance(obj, Student):
        return StudentUpstream(obj, student_features)
    if isinstance(obj, nn.Module):
        if not all(hasattr(obj, attr) for attr in ("layer_outputs", "fingerprint", "num_layers", "normalize")):
            raise ValueError(f"upstream: {type(obj).__name__} is neither a Student nor a Teacher")
        return TeacherUpstream(obj, name=type(obj).__name__)
    return load_upstream(obj, student_features, seed)
