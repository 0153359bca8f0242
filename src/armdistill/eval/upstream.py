"""Frozen upstreams for probing: a student (PyTorch or exported ONNX), a teacher, or an MFCC / fbank baseline.

Every upstream maps one utterance to a stack of 50 Hz feature sequences
``[layers, frames, dim]`` (layer 0 = encoder input for models) and names itself with a
fingerprint that changes whenever its features could change, which keys the feature cache.
Padding-exact upstreams (students outside ``release`` mode, teachers: an utterance's features
do not depend on what else is padded into its batch) also extract zero-padded batches.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch
from torch import Tensor, nn

from armdistill.checks import check_choice
from armdistill.config import ConfigError
from armdistill.config import to_dict
from armdistill.eval.features import BASELINES, baseline_features
from armdistill.io.digest import weights_digest
from armdistill.io.hub import resolve_pretrained
from armdistill.io.onnx_model import OnnxStudent, onnx_model_path
from armdistill.models.config import PRESETS
from armdistill.models.exported import is_export
from armdistill.models.student import CONFIG_NAME, Student

StudentFeatures = Literal["hidden", "projections"]
STUDENT_FEATURES: tuple[StudentFeatures, ...] = get_args(StudentFeatures)
# Bump when the baseline recipe in features.py changes, so stale cached features are not reused.
BASELINE_VERSION = "1"


class Upstream(ABC):
    """A frozen feature extractor; ``extract(wav [samples]) -> [layers, frames, dim]``."""

    name: str
    layer_names: list[str]
    padding_exact: bool = False
    features: StudentFeatures | None = None  # which student outputs, for student upstreams

    @abstractmethod
    def fingerprint(self) -> str:
        """A stable id of everything that determines the features."""

    @abstractmethod
    def extract(self, wav: Tensor) -> Tensor:
        """wav ``[samples]`` at 16 kHz -> ``[layers, frames, dim]`` float."""

    def extract_batch(self, wav: Tensor, lengths: Tensor) -> list[Tensor]:
        """wav ``[batch, samples]`` zero-padded, lengths ``[batch]`` -> each utterance's
        ``[layers, frames, dim]`` on the CPU. Without ``padding_exact``: one utterance at a time."""
        return [self.extract(w[:n]) for w, n in zip(wav, lengths.tolist())]

    def to(self, device: str | torch.device) -> "Upstream":
        """Run on ``device`` (model upstreams move their weights; baselines stay on the CPU)."""
        return self


class BaselineUpstream(Upstream):
    """MFCC / fbank features as a single 'layer'."""

    def __init__(self, name: str):
        check_choice("baseline", name, BASELINES)
        self.name = name
        self.layer_names = [name]

    def fingerprint(self) -> str:
        return f"baseline:{self.name}:v{BASELINE_VERSION}"

    def extract(self, wav: Tensor) -> Tensor:
        return baseline_features(self.name, wav)[None]


def student_layer_names(features: StudentFeatures, count: int) -> list[str]:
    """Names of ``count`` stacked student features: encoder input and layers, or heads."""
    if features == "hidden":
        return ["input"] + [f"layer {i}" for i in range(1, count)]
    return [f"head {i + 1}" for i in range(count)]


class StudentUpstream(Upstream):
    """A student's raw layer outputs (``hidden``: encoder input + every layer) or its
    projection-head outputs (``projections``: one per layer)."""

    def __init__(self, student: Student, features: StudentFeatures = "hidden", name: str = "student"):
        check_choice("student_features", features, STUDENT_FEATURES)
        if features == "projections" and student.heads is None:
            raise ConfigError(f"{name}: student has no projection heads (proj_dim is null); use 'hidden'")
        self.student = student.eval().requires_grad_(False)
        self.padding_exact = student.reuse_mode != "release"
        self.features = features
        self.name = name
        cfg = student.config
        count = cfg.num_layers + 1 if features == "hidden" else len(cfg.head_layers)
        self.layer_names = student_layer_names(features, count)
        self._fingerprint: str | None = None

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            config = json.dumps(to_dict(self.student.config), sort_keys=True)
            digest = hashlib.sha256(f"{config}|{weights_digest(self.student)}".encode()).hexdigest()
            self._fingerprint = f"student:{self.features}:{digest}"
        return self._fingerprint

    def extract(self, wav: Tensor) -> Tensor:
        return self.extract_batch(wav[None], torch.tensor([wav.shape[0]]))[0]

    @torch.inference_mode()
    def extract_batch(self, wav: Tensor, lengths: Tensor) -> list[Tensor]:
        self.student.eval()
        device = next(self.student.parameters()).device
        out = self.student(wav.to(device).float(), lengths.to(device))
        states = torch.stack(out.hidden_states if self.features == "hidden" else out.projections).float().cpu()
        return [states[:, i, :n] for i, n in enumerate(out.lengths.tolist())]

    def to(self, device: str | torch.device) -> "StudentUpstream":
        self.student.to(device)
        return self


class OnnxUpstream(Upstream):
    """A student exported by ``armdistill export --format onnx``, run by onnxruntime: the
    features of :class:`StudentUpstream`, computed by ``model.onnx`` or ``model.int8.onnx``.
    onnxruntime uses as many threads as torch does when the upstream is built."""

    def __init__(self, path: str | Path, features: StudentFeatures = "hidden", name: str | None = None):
        check_choice("student_features", features, STUDENT_FEATURES)
        self.path = Path(path)
        self.model = OnnxStudent(self.path, threads=torch.get_num_threads())
        self.output = "hidden_states" if features == "hidden" else "projections"
        if self.output not in self.model.output_names:
            raise ConfigError(f"{self.path}: the exported student has no projection heads; use 'hidden'")
        self.features = features
        self.name = name or str(self.path)
        self.layer_names = student_layer_names(features, self.model.output_shapes[self.output][0])
        self._fingerprint: str | None = None

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            digest = hashlib.sha256(self.path.read_bytes()).hexdigest()
            self._fingerprint = f"onnx:{self.features}:{digest}"
        return self._fingerprint

    def extract(self, wav: Tensor) -> Tensor:
        out = self.model(wav[None].float().numpy(), np.array([wav.shape[0]]))
        return torch.from_numpy(out[self.output][:, 0]).float()


class TeacherUpstream(Upstream):
    """A teacher's encoder input and every layer output (``TeacherOutput.hidden_states``)."""

    padding_exact = True

    def __init__(self, teacher: nn.Module, name: str = "teacher"):
        self.teacher = teacher.eval()
        self.name = name
        self.layer_names = ["input"] + [f"layer {i + 1}" for i in range(teacher.num_layers)]

    def fingerprint(self) -> str:
        return f"teacher:normalize={self.teacher.normalize}:{self.teacher.fingerprint()}"

    def extract(self, wav: Tensor) -> Tensor:
        return self.extract_batch(wav[None], torch.tensor([wav.shape[0]]))[0]

    @torch.inference_mode()
    def extract_batch(self, wav: Tensor, lengths: Tensor) -> list[Tensor]:
        out = self.teacher.layer_outputs(wav.float(), lengths)
        states = torch.stack(out.hidden_states).float().cpu()
        return [states[:, i, :n] for i, n in enumerate(out.lengths.tolist())]

    def to(self, device: str | torch.device) -> "TeacherUpstream":
        self.teacher.to(device)
        return self


def is_student_dir(path: Path) -> bool:
    config = path / CONFIG_NAME
    if not config.is_file():
        return False
    try:
        data = json.loads(config.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and "reuse_pattern" in data and "conv_layers" in data


def is_exported_student(path: Path) -> bool:
    """A directory written by ``armdistill export --format hf``."""
    try:
        return is_export(json.loads((path / CONFIG_NAME).read_text()))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, TypeError):
        return False


def load_upstream(spec: str | Path, student_features: StudentFeatures = "hidden", seed: int = 0) -> Upstream:
    """Resolve an upstream from its command-line spelling.

    ``mfcc`` / ``mfcc-context`` / ``fbank``: baselines; a directory written by
    ``Student.save_pretrained`` or ``armdistill export --format hf`` (or its Hub id): that
    student; a ``.onnx`` file or a directory holding ``model.onnx`` (``armdistill export --format
    onnx``): that model under onnxruntime; a student preset name (or ``preset:NAME``): a randomly
    initialised student seeded by ``seed`` (an untrained reference point); ``teacher:SRC`` or anything else:
    ``Teacher.from_pretrained(SRC)`` (a path or Hub id).
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
    onnx_model = onnx_model_path(Path(text))
    if onnx_model is not None:
        return OnnxUpstream(onnx_model, student_features, name=text)
    source = text.removeprefix("teacher:")
    path = resolve_pretrained(source, "upstream")
    if source == text and path.is_dir() and (is_student_dir(path) or is_exported_student(path)):
        return StudentUpstream(Student.from_pretrained(path), student_features, name=text)
    try:
        from armdistill.teachers import Teacher
    except ImportError as err:
        raise ConfigError(f"upstream {text!r}: not a baseline, preset or student directory, "
                         f"and teachers cannot be loaded: {err}") from None
    return TeacherUpstream(Teacher.from_pretrained(path), name=source)


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
