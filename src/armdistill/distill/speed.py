"""Training fast paths, each a switch of the ``speed`` config section; none changes the maths.

* ``reuse_kernel``: how a ``paper``-mode student runs reused attention maps in training steps.
  ``sdpa`` recomputes ``softmax(Q_prev K_prev^T)`` inside ``scaled_dot_product_attention`` (no
  ``[T, T]`` tensor kept); ``stored`` keeps each computed map and applies it (the ``explicit``
  route). ``auto`` takes ``stored`` on CUDA, where it trained faster on an H100 (SDPA with a
  padding mask cannot use the flash kernel, and the fused kernels' backward recomputes
  ``Q_prev K_prev^T`` for every reusing layer), and ``sdpa`` elsewhere. Validation and
  inference always use ``sdpa``.
* ``compile``: ``torch.compile`` of the student and of every teacher encoder layer, in place
  (parameter names, checkpoints and the teacher's layer-output hooks are unchanged).
* ``pad_to_seconds``: pad each micro-batch up to a multiple of this many seconds, so that few
  distinct shapes reach the compiled graphs. Padding is exact (masked everywhere), so only speed
  changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from armdistill.config import ConfigError
from armdistill.models.attention import ReuseKernel

if TYPE_CHECKING:  # the config reads this module; it must not load transformers
    from armdistill.models.student import Student
    from armdistill.teachers import Teacher

ReuseKernelChoice = Literal["auto", "sdpa", "stored"]


@dataclass
class SpeedSection:
    """Fast paths of the training step (module docstring); all off or automatic by default."""

    reuse_kernel: ReuseKernelChoice = "auto"
    compile: bool = False
    pad_to_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.reuse_kernel not in ("auto", "sdpa", "stored"):
            raise ConfigError(f"speed.reuse_kernel: expected 'auto', 'sdpa' or 'stored', got {self.reuse_kernel!r}")
        if self.pad_to_seconds is not None and self.pad_to_seconds <= 0:
            raise ConfigError(f"speed.pad_to_seconds: expected seconds > 0 or null, got {self.pad_to_seconds!r}")


def resolve_reuse_kernel(choice: ReuseKernelChoice, device: torch.device) -> ReuseKernel:
    """The kernel ``choice`` means on ``device`` (``auto``: ``stored`` on CUDA, else ``sdpa``)."""
    if choice == "auto":
        return "stored" if device.type == "cuda" else "sdpa"
    return choice


def pad_to_multiple(wav: Tensor, multiple: int) -> Tensor:
    """Zero-pad ``wav`` ``[batch, samples]`` on the right to a multiple of ``multiple`` samples."""
    extra = -wav.shape[1] % multiple
    return F.pad(wav, (0, extra)) if extra else wav


def compile_models(student: Student, teacher: Teacher, backend: str = "inductor") -> None:
    """``torch.compile`` the student and each teacher encoder layer's ``forward``, in place.

    The teacher's layers are compiled one by one, not the encoder whole: ``Teacher`` collects
    layer outputs with forward hooks registered per call, which must stay outside the graphs.
    """
    student.compile(backend=backend)
    for layer in teacher.model.encoder.layers:
        layer.forward = torch.compile(layer.forward, backend=backend)
