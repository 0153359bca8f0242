"""Checkpoints that survive kills, the run directory's rules, and the choice of where to resume.

* :class:`AtomicCheckpointIO` writes every checkpoint (periodic, ``last.ckpt``, ``best.ckpt``)
  to a temporary file beside it, fsyncs and renames it into place. Lightning's own writer goes
  through ``$TMPDIR``, which on another filesystem is a copy in place that a kill leaves torn.
  It reads them (``--resume``) through :func:`read_checkpoint`, as every reader of ours does:
  code-carrying archives are refused, the pickle may hold tensors and containers only.
* :class:`StepCheckpoint` saves only right after an optimiser step, never mid-accumulation.
* :func:`resume_point` picks the newest checkpoint that loads and says which it passed over;
  :func:`resume_changes` refuses a resumed config that differs in anything but ``trainer.max_steps``.
* :func:`prepare_run_dir` refuses to train into a non-empty directory unless resuming or
  overwriting, and clears what killed writes left behind.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint

from armdistill.config import ConfigError
from armdistill.data.bad_audio import SKIPPED_NAME
from armdistill.errors import FileFormatError, RefusedError, UserError
from armdistill.io.atomic import atomic_file, remove_orphans
from armdistill.io.safe_pickle import safe_torch_load

CHECKPOINT_DIR = "checkpoints"
LAST_NAME = "last.ckpt"
# What a run writes into output_dir; --overwrite removes exactly these.
RUN_ENTRIES: tuple[str, ...] = ("config.yaml", CHECKPOINT_DIR, "logs", "student", "student-best", SKIPPED_NAME)
# The one setting a resumed run may change: a finished run is extended by raising it.
RESUMABLE_KEYS: tuple[str, ...] = ("trainer.max_steps",)
# Settings whose "auto" a run resolves against the loaded teacher (and records resolved).
RESOLVED_AGAINST_TEACHER: tuple[str, ...] = ("loss.target_norm", "student.proj_dim")
# Test hook: the N-th checkpoint write of the process stops half-way for PAUSE_SECONDS, so a
# test can kill the process inside a write.
PAUSE_ENV = "ARMDISTILL_TEST_PAUSE_AT_WRITE"
PAUSE_SECONDS = 300.0


def say(message: str) -> None:
    print(f"armdistill distill: {message}", file=sys.stderr, flush=True)


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` into a temporary file beside the target, fsync, ``os.replace``; reads
    through :func:`read_checkpoint` (Lightning's ``weights_only`` request is met by it)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__}.save_checkpoint takes no storage_options")
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        data = buffer.getbuffer()
        self.writes += 1
        with atomic_file(path) as f:
            f.write(data[: len(data) // 2])
            if os.environ.get(PAUSE_ENV) == str(self.writes):
                f.flush()
                os.fsync(f.fileno())
                time.sleep(PAUSE_SECONDS)
            f.write(data[len(data) // 2 :])

    def load_checkpoint(self, path: str | Path, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        return read_checkpoint(Path(path))


class StepCheckpoint(ModelCheckpoint):
    """``every_n_train_steps`` saves, made only by the micro-batch that completed an optimiser step.

    Lightning tests the interval after every micro-batch and keeps the last saved step in memory
    only, so right after a resume (or a resume that raised ``max_steps``) it saved the restored
    step again one micro-batch in: mid-accumulation, as ``stepN-v1.ckpt``, and that became
    ``last.ckpt``. Names carry no version counter: a step saved again replaces its file.
    """

    def __init__(self, **kwargs: Any):
        super().__init__(enable_version_counter=False, **kwargs)
        self._step_before_batch = 0

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        self._step_before_batch = trainer.global_step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if trainer.global_step != self._step_before_batch:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


@dataclass
class ResumePoint:
    path: Path
    step: int
    config: dict[str, Any]  # the run's config as the checkpoint recorded it
    passed_over: list[tuple[Path, str]]  # newer files that do not load, and why


def read_checkpoint(path: Path) -> dict[str, Any]:
    """One of our distillation checkpoints, through :func:`safe_torch_load` without stand-ins."""
    ckpt = safe_torch_load(path, standins=False)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("armdistill"), dict) or "global_step" not in ckpt:
        raise FileFormatError(f"{path}: not an armdistill distillation checkpoint")
    return ckpt


def _read(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(checkpoint, None), or (None, why it cannot be resumed from). A file refused because it
    carries code is an error, never passed over quietly."""
    size = path.stat().st_size
    if size == 0:
        return None, "0 bytes (a torn write)"
    try:
        return read_checkpoint(path), None
    except RefusedError:
        raise
    except UserError as err:  # any unreadable file is passed over; the reason is reported
        reason = str(err).removeprefix(f"{path}: ")  # the loader's messages start with the path
        return None, reason if reason.startswith("not an armdistill") else f"does not load ({reason})"


def resume_point(output_dir: str | Path, resume: str | None) -> ResumePoint | None:
    """``None``: start fresh. ``"last"``: the newest checkpoint (by write time) in
    ``output_dir/checkpoints`` that loads. Otherwise the checkpoint file given, which must load."""
    if resume is None:
        return None
    if resume != "last":
        path = Path(resume)
        if not path.is_file():
            raise FileFormatError(f"--resume {path}: no such checkpoint file")
        ckpt, problem = _read(path)
        if ckpt is None:
            raise FileFormatError(f"--resume {path}: {problem}")
        return ResumePoint(path, int(ckpt["global_step"]), ckpt["armdistill"]["config"], [])
    ckpt_dir = Path(output_dir) / CHECKPOINT_DIR
    candidates = sorted(ckpt_dir.glob("*.ckpt"), key=lambda p: (p.stat().st_mtime_ns, p.name == LAST_NAME), reverse=True)
    passed_over = []
    for path in candidates:
        ckpt, problem = _read(path)
        if ckpt is not None:
            return ResumePoint(path, int(ckpt["global_step"]), ckpt["armdistill"]["config"], passed_over)
        passed_over.append((path, problem))
    found = "; ".join(f"{p.name}: {why}" for p, why in passed_over) or "none found"
    raise ConfigError(f"--resume: no loadable checkpoint in {ckpt_dir} ({found})")


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix: data}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def resume_changes(saved: dict[str, Any], current: dict[str, Any], step: int) -> dict[str, tuple[Any, Any]]:
    """The keys in which ``current`` (plain data) differs from the checkpoint's ``saved`` config.

    ``output_dir`` is where the run lives, not a setting: a moved run directory resumes.
    Raises :class:`ConfigError` naming every differing key outside ``RESUMABLE_KEYS``, or a
    ``trainer.max_steps`` below the checkpoint's step; returns the allowed changes (old, new).
    """
    old, new = _flatten(saved), _flatten(current)
    # the checkpoint records these resolved against its teacher, whose fingerprint the resumed
    # run must match: "auto" (stated or, as the default, left out) resolves to the same value again
    for key in RESOLVED_AGAINST_TEACHER:
        if new.get(key, "auto") == "auto" and key in old:
            new[key] = old[key]
    changed = {k: (old.get(k), new.get(k)) for k in sorted(old.keys() | new.keys())
               if k != "output_dir" and old.get(k, KeyError) != new.get(k, KeyError)}
    refused = [k for k in changed if k not in RESUMABLE_KEYS]
    if refused:
        shown = ", ".join(f"{k} ({changed[k][0]!r} -> {changed[k][1]!r})" for k in refused)
        raise ConfigError(f"--resume: the config differs from the checkpoint's in {shown}; only "
                          f"{', '.join(RESUMABLE_KEYS)} may change when resuming")
    max_steps = new["trainer.max_steps"]
    if max_steps < step:
        raise ConfigError(f"trainer.max_steps: {max_steps} is below the step the checkpoint reached ({step})")
    return changed


def prepare_run_dir(output_dir: str | Path, resuming: bool, overwrite: bool) -> None:
    """Refuse a non-empty ``output_dir`` unless resuming or overwriting; with ``overwrite`` remove
    the previous run's entries. Either way clear what killed atomic writes left behind."""
    out = Path(output_dir)
    entries = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if entries and not resuming and not overwrite:
        shown = ", ".join(entries[:6]) + (", ..." if len(entries) > 6 else "")
        raise ConfigError(f"output_dir: {out} is not empty ({shown}); pass --resume to continue the run there "
                          "or --overwrite to replace it")
    if overwrite:
        for name in RUN_ENTRIES:
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    for directory in (out, out / CHECKPOINT_DIR):
        for orphan in remove_orphans(directory):
            say(f"removed {orphan}, left by an interrupted write")
