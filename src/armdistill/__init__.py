"""armdistill: attention-map reuse and masking distillation for speech SSL models.

Heavy modules load on first use (``armdistill.Student``, ``armdistill.Teacher``), so worker
processes that import the package for small jobs stay fast.
"""

from pathlib import Path

__version__ = "0.1.0"

DEFAULT_TEACHER = Path(__file__).parent / "assets" / "teacher"
"""The small HuBERT teacher shipped for the demo (see its README.md model card)."""

_LAZY = {
    "Student": "armdistill.models.student",
    "StudentConfig": "armdistill.models.config",
    "Teacher": "armdistill.teachers.teacher",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'armdistill' has no attribute {name!r}")


__all__ = ["DEFAULT_TEACHER", "Student", "StudentConfig", "Teacher", "__version__"]
