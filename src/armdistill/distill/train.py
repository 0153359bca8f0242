"""Trainer set-up for distillation, read top to bottom: callbacks, the Trainer, then the run.

Data loading lives in ``distill/data.py``, checkpoints and resume in ``distill/checkpoints.py``,
student directories and their provenance in ``distill/export.py``.

Layout of ``output_dir``: ``config.yaml`` (resolved), ``checkpoints/`` (Lightning, for resume:
periodic, ``last.ckpt`` and ``best.ckpt`` by validation loss; no teacher weights; loadable with
``weights_only=True``), ``logs/`` (TensorBoard, CSV), ``skipped.tsv`` (files dropped under
``data.on_bad_audio: skip``) and ``student/`` (+ ``student-best/``), written by
``Student.save_pretrained`` with ``distill.json`` beside the weights (which also lists the
tensors copied from the teacher when ``student.init_from_teacher`` is set). Every checkpoint and
student directory is written atomically (``armdistill.io.atomic``), so a kill at any moment
leaves the previous complete version.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import yaml
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint, RichProgressBar, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.strategies import DDPStrategy

from armdistill.config import ConfigError, to_dict
from armdistill.data.bad_audio import SKIPPED_NAME, SkipLog
from armdistill.distill.checkpoints import (
    CHECKPOINT_DIR,
    AtomicCheckpointIO,
    StepCheckpoint,
    prepare_run_dir,
    resume_changes,
    resume_point,
    say,
)
from armdistill.distill.config import DistillConfig, Plan, plan, resolve_proj_dim, resolved_dict
from armdistill.distill.data import DistillData, EpochProgress
from armdistill.distill.export import export_checkpoint, student_info, write_student
from armdistill.distill.guard import NonFiniteGuard
from armdistill.distill.module import DistillModule
from armdistill.errors import expected
from armdistill.frames import SAMPLE_RATE
from armdistill.io.atomic import write_text_atomic
from armdistill.models.student import Student
from armdistill.teachers import Teacher


class ScheduleFromPlan(Callback):
    """Sets the learning rate of the step about to run from the plan's schedule.

    A checkpoint's optimiser state holds the learning rate its own schedule gave; a run resumed
    with another ``trainer.max_steps`` must continue on the recomputed schedule at once. On an
    unchanged schedule this writes the value already there.
    """

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for config in trainer.lr_scheduler_configs:
            scheduler = config.scheduler
            for group, base, factor in zip(scheduler.optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
                group["lr"] = base * factor(scheduler.last_epoch)


def check_compatible(student: Student, teacher: Teacher, cfg: DistillConfig) -> None:
    """Frames must align 1:1 and every projection head must have a teacher layer of its width."""
    s, t = student.config.downsample, teacher.downsample
    if s != t:
        raise ConfigError(expected("student.conv_layers", f"the teacher's total stride {t} ({SAMPLE_RATE / t:g} Hz frames)", s))
    lengths = torch.arange(t, 3 * t + 1)
    if not torch.equal(student.frame_lengths(lengths), teacher.frame_lengths(lengths)):
        what = "the teacher's frame count at every length (its kernels)"
        raise ConfigError(expected("student.conv_layers", what, student.config.conv_layers))
    if student.config.proj_dim != teacher.dim:
        raise ConfigError(expected("student.proj_dim", f"the teacher's width {teacher.dim} (or auto)", student.config.proj_dim))
    heads = len(student.config.head_layers)
    layer_map = cfg.layer_map
    if len(layer_map) != heads or max(layer_map) >= teacher.num_layers:
        what = f"one of the teacher's {teacher.num_layers} layers for each of the student's {heads} projection heads"
        raise ConfigError(expected("loss.layer_map", what, layer_map))


def initialise_from_teacher(student: Student, teacher: Teacher) -> list[str]:
    """Copy the teacher's tensors whose names and shapes match the student's; returns their names."""
    copied = student.init_from_teacher(teacher.model.state_dict())
    if not copied:
        raise ConfigError(
            "student.init_from_teacher: no teacher tensor matches a student tensor in name and shape "
            "(the student must follow the teacher's layout, as the distilhubert preset follows HuBERT's)"
        )
    return copied


def build_trainer(cfg: DistillConfig, p: Plan, has_valid: bool) -> tuple[pl.Trainer, ModelCheckpoint | None]:
    """The Trainer and the best-by-validation checkpoint callback (None without validation)."""
    out, t = Path(cfg.output_dir), cfg.trainer
    ckpt_dir = out / CHECKPOINT_DIR
    callbacks: list[Callback] = [
        EpochProgress(),
        ScheduleFromPlan(),
        NonFiniteGuard(cfg),
        LearningRateMonitor(logging_interval="step"),
        # monitoring "step" keeps the newest keep_checkpoints periodic files; last.ckpt is a full
        # second write (not a link), so it never points at a file that top-k has removed
        StepCheckpoint(dirpath=ckpt_dir, filename="step{step:08d}", auto_insert_metric_name=False,
                       every_n_train_steps=t.checkpoint_every_steps, monitor="step", mode="max",
                       save_top_k=t.keep_checkpoints, save_last=True),
    ]
    best = None
    if has_valid:
        # one fixed name: a resumed run's restored callback state may predate the newest best
        # (last.ckpt is written before that step's validation), and must still find the file
        best = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val/loss", mode="min", save_top_k=1,
                               enable_version_counter=False, save_on_train_epoch_end=False)
        callbacks.append(best)
    if t.progress_bar == "rich":
        callbacks.append(RichProgressBar())
    elif t.progress_bar == "tqdm":
        callbacks.append(TQDMProgressBar())
    loggers = [
        TensorBoardLogger(out / "logs", name="tensorboard") if kind == "tensorboard" else CSVLogger(out / "logs", name="csv")
        for kind in t.loggers
    ]
    strategy: Any = t.strategy
    if strategy == "auto" and p.world_size > 1:
        strategy = DDPStrategy(find_unused_parameters=t.find_unused_parameters)
    trainer = pl.Trainer(
        accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes, strategy=strategy,
        precision=t.precision, max_steps=t.max_steps, accumulate_grad_batches=p.accumulate,
        gradient_clip_val=t.gradient_clip_val, deterministic=t.deterministic,
        # validation and logging intervals count micro-batches and optimiser steps respectively
        val_check_interval=t.val_every_steps * p.accumulate, check_val_every_n_epoch=None,
        limit_val_batches=(t.limit_val_batches or 1.0) if has_valid else 0,
        log_every_n_steps=t.log_every_steps, logger=loggers or False, callbacks=callbacks,
        enable_progress_bar=t.progress_bar != "none", use_distributed_sampler=False,
        # Lightning's model summary counts FLOPs it cannot see (0); our own summary is --print-config
        num_sanity_val_steps=0, enable_model_summary=False, default_root_dir=out, plugins=[AtomicCheckpointIO()],
    )
    return trainer, best


def run_distillation(cfg: DistillConfig, resume: str | None = None, overwrite: bool = False) -> Path:
    """Train a student by ``cfg.loss.objective``; returns the exported student directory.

    ``resume``: ``"last"`` (the newest checkpoint in ``output_dir`` that loads) or a checkpoint
    path; the config must equal the checkpoint's but for ``trainer.max_steps``. Without it a
    non-empty ``output_dir`` is refused unless ``overwrite`` replaces the run there.
    """
    if resume is not None and overwrite:
        raise ConfigError("--resume and --overwrite: give one; resuming keeps the run that overwriting removes")
    cfg.check_paths()
    p = plan(cfg)
    out = Path(cfg.output_dir)
    trainer, best = build_trainer(cfg, p, has_valid=cfg.data.valid is not None)
    start = resume_point(out, resume)
    if start is not None:
        changes = resume_changes(start.config, to_dict(cfg), start.step)
        if trainer.is_global_zero:
            for path, why in start.passed_over:
                say(f"passed over {path}: {why}")
            say(f"resuming from {start.path} (step {start.step})")
            for key, (old, new) in changes.items():
                say(f"{key}: {old} -> {new}; learning-rate schedule recomputed (warm-up {p.warmup_steps} steps, "
                    f"{p.schedule} decay to step {p.max_steps})")
    if trainer.is_global_zero:
        prepare_run_dir(out, resuming=start is not None, overwrite=overwrite)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    t = cfg.teacher
    teacher = Teacher.from_pretrained(t.path, t.normalize, t.batch_masked, t.share_front_end, t.sdpa)
    cfg = resolve_proj_dim(cfg, teacher.dim)
    student = Student(cfg.student_model)
    check_compatible(student, teacher, cfg)
    # a resumed run overwrites these weights from its checkpoint; the record stays the same
    copied = initialise_from_teacher(student, teacher) if cfg.init_from_teacher else None
    fingerprint = teacher.fingerprint()
    module = DistillModule(student, teacher, cfg, p, fingerprint, copied)
    cfg = module.cfg  # loss.target_norm resolved against the teacher, as saved below
    if trainer.is_global_zero:
        write_text_atomic(out / "config.yaml", yaml.safe_dump(resolved_dict(cfg), sort_keys=False, default_flow_style=None))
    data = DistillData(cfg)
    trainer.fit(module, datamodule=data, ckpt_path=None if start is None else start.path, weights_only=True)
    if trainer.is_global_zero:
        skipped = len(SkipLog(out / SKIPPED_NAME))
        write_student(student, out / "student", student_info(cfg, fingerprint, copied, trainer.global_step, skipped))
        if best is not None and Path(best.best_model_path).is_file():
            export_checkpoint(best.best_model_path, out / "student-best", skipped)
    return out / "student"
