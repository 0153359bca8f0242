"""A distillation run's students and their provenance.

A student directory is ``Student.save_pretrained`` plus :data:`INFO_NAME`, built by
:func:`student_info` alone: the resolved config, git revision, teacher fingerprint, the tensors
copied from the teacher, the step and the count of skipped files. ``student/`` (the end of
training) and ``student-best/`` (from the best checkpoint) carry the same sections.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from armdistill.config import from_dict
from armdistill.distill.checkpoints import read_checkpoint
from armdistill.distill.config import DistillConfig, resolved_dict
from armdistill.io.atomic import atomic_directory
from armdistill.models.config import StudentConfig
from armdistill.models.student import Student

INFO_NAME = "distill.json"


def git_revision() -> str:
    """Commit of the source tree this package runs from, ``-dirty`` with local changes; ``unknown`` outside git."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{rev}-dirty" if dirty else rev


def teacher_init_record(copied: list[str] | None) -> dict[str, Any] | None:
    """What ``distill.json`` says of the initialisation: None, or the count and names of the copied tensors."""
    return None if copied is None else {"count": len(copied), "tensors": list(copied)}


def student_info(cfg: DistillConfig, teacher_fingerprint: str, teacher_init: list[str] | None, global_step: int,
                 skipped_files: int, **extra: Any) -> dict[str, Any]:
    """The contents of ``distill.json``; ``extra`` adds entries (e.g. the checkpoint it came from)."""
    return {"config": resolved_dict(cfg), "git_revision": git_revision(), "teacher_fingerprint": teacher_fingerprint,
            "teacher_init": teacher_init_record(teacher_init), "global_step": global_step,
            "skipped_files": skipped_files, **extra}


def write_student(student: Student, directory: str | Path, info: dict[str, Any]) -> Path:
    """``save_pretrained`` plus ``distill.json``, written atomically: ``directory`` holds the
    complete previous export until the new one replaces it."""
    directory = Path(directory)
    with atomic_directory(directory) as tmp:
        student.save_pretrained(tmp)
        (tmp / INFO_NAME).write_text(json.dumps(info, indent=2) + "\n")
    return directory


def export_checkpoint(ckpt_path: str | Path, directory: str | Path, skipped_files: int) -> Path:
    """Turn a distillation checkpoint into a student directory."""
    ckpt = read_checkpoint(Path(ckpt_path))
    saved = ckpt["armdistill"]
    student = Student(StudentConfig.from_dict(saved["student_config"]))
    prefix = "student."
    student.load_state_dict({k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)})
    info = student_info(from_dict(DistillConfig, saved["config"]), saved["teacher_fingerprint"], saved.get("teacher_init"),
                        ckpt["global_step"], skipped_files, checkpoint=str(ckpt_path))
    return write_student(student, directory, info)
