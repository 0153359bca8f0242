"""Trainer set-up for distillation: data, callbacks, checkpoints, resume and export.

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

import json
import subprocess
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import yaml
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint, RichProgressBar, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.strategies import DDPStrategy
from torch.utils.data import DataLoader

from armdistill.config import ConfigError, to_dict
from armdistill.data.bad_audio import SKIPPED_NAME, BadItem, SkipLog
from armdistill.data.collate import collate_audio
from armdistill.data.dataset import AudioDataset
from armdistill.data.sampler import DynamicBatchSampler
from armdistill.distill.checkpoints import (
    CHECKPOINT_DIR,
    AtomicCheckpointIO,
    StepCheckpoint,
    prepare_run_dir,
    read_checkpoint,
    resume_changes,
    resume_point,
    say,
)
from armdistill.distill.config import DistillConfig, Plan, plan, resolved_dict
from armdistill.distill.guard import NonFiniteGuard
from armdistill.distill.module import DistillModule
from armdistill.frames import receptive_field
from armdistill.io.atomic import atomic_directory, write_text_atomic
from armdistill.models.config import StudentConfig
from armdistill.models.student import Student
from armdistill.teachers import Teacher

INFO_NAME = "distill.json"


class ResumableLoader(DataLoader):
    """A loader over a :class:`DynamicBatchSampler` whose position survives restarts.

    Lightning saves ``state_dict()`` in its checkpoints and calls ``load_state_dict()`` before
    iterating on restart. The loader runs ahead of training (prefetch, workers), so the count
    saved is ``consumed``, which :class:`EpochProgress` keeps in step with the training loop.

    The data epoch (shuffle and crop seed) counts passes over the data, not Lightning's epochs:
    restored from a checkpoint saved at an epoch's last micro-batch, Lightning runs one empty
    epoch before the next, which would otherwise skip a pass and change every later batch.
    """

    def __init__(self, dataset: AudioDataset, sampler: DynamicBatchSampler, num_workers: int):
        super().__init__(dataset, batch_sampler=sampler, collate_fn=collate_audio, num_workers=num_workers)
        self.consumed = 0
        self._restored = False

    def start_epoch(self) -> None:
        """A training epoch starts: go on with a pass restored part-way, else start the next pass."""
        if self._restored and self.consumed < len(self.batch_sampler):
            return
        self._restored = False
        if self.consumed > 0:
            self.consumed = 0
            self.dataset.set_epoch(self.batch_sampler.epoch + 1)
            self.batch_sampler.set_epoch(self.batch_sampler.epoch + 1)

    def state_dict(self) -> dict[str, Any]:
        return self.batch_sampler.state_dict(batches_consumed=self.consumed)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.dataset.set_epoch(int(state["epoch"]))
        self.batch_sampler.load_state_dict(state)
        self.consumed = int(state["batches_yielded"])
        self._restored = True


class EpochProgress(Callback):
    """Starts the loader's passes over the data and counts the batches training used."""

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loader = trainer.train_dataloader
        if isinstance(loader, ResumableLoader):
            loader.start_epoch()

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        loader = trainer.train_dataloader
        if isinstance(loader, ResumableLoader):
            loader.consumed = batch_idx + 1


class DistillData(pl.LightningDataModule):
    """Training and held-out loaders; built once the strategy knows this process's rank.

    Applies ``data.on_bad_audio`` in the main process to the files a batch's reads found bad
    (a worker's exception would arrive as a traceback): ``error`` raises the first as one line;
    ``skip`` records them in ``output_dir/skipped.tsv`` (read back on resume, so those files are
    dropped again unread) and logs the running count as ``data/skipped_files``.
    """

    def __init__(self, cfg: DistillConfig):
        super().__init__()
        self.cfg = cfg
        self.min_samples = receptive_field([(k, s) for _, k, s in cfg.student_config().conv_layers])
        d = cfg.data
        if d.crop_seconds is not None and d.crop_seconds * d.sample_rate < self.min_samples:
            raise ConfigError(f"data.crop_seconds: {d.crop_seconds} s is shorter than one frame "
                              f"({self.min_samples} samples)")
        self.skip_log: SkipLog | None = None
        self.datasets: list[AudioDataset] = []

    def setup(self, stage: str) -> None:
        self.skip_log = SkipLog(Path(self.cfg.output_dir) / SKIPPED_NAME)

    def _loader(self, manifest: str, train: bool) -> DataLoader:
        d = self.cfg.data
        dataset = AudioDataset(
            manifest, d.sample_rate, d.min_seconds, d.max_seconds, d.crop_seconds if train else None, seed=self.cfg.seed,
            min_samples=self.min_samples, on_bad_audio=d.on_bad_audio, known_bad=self.skip_log.known(manifest),
            defer_errors=True,
        )
        self.datasets.append(dataset)
        if self.trainer.is_global_zero:
            self._skipped(dataset.rejected)
        sampler = DynamicBatchSampler(
            dataset.sizes, d.micro_batch_seconds, d.sample_rate, d.num_buckets, shuffle=train, seed=self.cfg.seed,
            rank=self.trainer.global_rank, world_size=self.trainer.world_size, max_batch_size=d.max_batch_size,
        )
        if train:
            return ResumableLoader(dataset, sampler, d.num_workers)
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_audio, num_workers=d.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.cfg.data.train, train=True)

    def val_dataloader(self) -> DataLoader | list:
        return [] if self.cfg.data.valid is None else self._loader(self.cfg.data.valid, train=False)

    def on_before_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        bad = batch.pop("bad")
        if bad and self.cfg.data.on_bad_audio == "error":
            raise bad[0].error()
        self._skipped(bad)
        return batch

    def _skipped(self, items: list[BadItem]) -> None:
        new = self.skip_log.add(items)
        for item in new:
            say(f"skipped {item.error()}")
            # later epochs' workers, forked from this process, drop it without reading it
            for dataset in self.datasets:
                if str(dataset.manifest_path.resolve()) == item.manifest:
                    dataset.known_bad[item.line] = item.problem
        if new:
            for logger in self.trainer.loggers:
                logger.log_metrics({"data/skipped_files": float(len(self.skip_log))}, step=self.trainer.global_step)


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
        raise ConfigError(
            f"student: frame rate {16000 / s:g} Hz (stride {s}) differs from the teacher's {16000 / t:g} Hz (stride {t})"
        )
    lengths = torch.arange(t, 3 * t + 1)
    if not torch.equal(student.frame_lengths(lengths), teacher.frame_lengths(lengths)):
        raise ConfigError("student.conv_layers: frame counts differ from the teacher's for some lengths (kernels differ)")
    if student.config.proj_dim != teacher.dim:
        raise ConfigError(f"student.proj_dim: {student.config.proj_dim} must equal the teacher's width {teacher.dim}")
    heads = len(student.config.head_layers)
    layer_map = cfg.loss.layer_map if cfg.loss.layer_map is not None else list(range(heads))
    if len(layer_map) != heads or max(layer_map) >= teacher.num_layers:
        raise ConfigError(
            f"loss.layer_map: {layer_map} must give one of the teacher's {teacher.num_layers} layers to each of the "
            f"student's {heads} projection heads"
        )


def initialise_from_teacher(student: Student, teacher: Teacher) -> list[str]:
    """Copy the teacher's tensors whose names and shapes match the student's; returns their names."""
    copied = student.init_from_teacher(teacher.model.state_dict())
    if not copied:
        raise ConfigError(
            "student.init_from_teacher: no teacher tensor matches a student tensor in name and shape "
            "(the student must follow the teacher's layout, as the distilhubert preset follows HuBERT's)"
        )
    return copied


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


def write_student(student: Student, directory: str | Path, info: dict[str, Any]) -> Path:
    """``save_pretrained`` plus ``distill.json`` (resolved config, git revision, teacher hash, step),
    written atomically: ``directory`` holds the complete previous export until the new one replaces it."""
    directory = Path(directory)
    with atomic_directory(directory) as tmp:
        student.save_pretrained(tmp)
        (tmp / INFO_NAME).write_text(json.dumps(info, indent=2) + "\n")
    return directory


def teacher_init_record(copied: list[str] | None) -> dict[str, Any] | None:
    """What ``distill.json`` says of the initialisation: None, or the count and names of the copied tensors."""
    return None if copied is None else {"count": len(copied), "tensors": list(copied)}


def export_checkpoint(ckpt_path: str | Path, directory: str | Path) -> Path:
    """Turn a distillation checkpoint into a student directory."""
    ckpt = read_checkpoint(Path(ckpt_path))
    saved = ckpt["armdistill"]
    student = Student(StudentConfig.from_dict(saved["student_config"]))
    prefix = "student."
    student.load_state_dict({k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)})
    info = {"config": saved["config"], "git_revision": git_revision(), "teacher_fingerprint": saved["teacher_fingerprint"],
            "teacher_init": teacher_init_record(saved.get("teacher_init")), "global_step": ckpt["global_step"],
            "checkpoint": str(ckpt_path)}
    return write_student(student, directory, info)


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
        num_sanity_val_steps=0, default_root_dir=out, plugins=[AtomicCheckpointIO()],
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
    student = Student(cfg.student_config())
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
        info = {"config": resolved_dict(cfg), "git_revision": git_revision(), "teacher_fingerprint": fingerprint,
                "teacher_init": teacher_init_record(copied), "global_step": trainer.global_step,
                "skipped_files": len(SkipLog(out / SKIPPED_NAME))}
        write_student(student, out / "student", info)
        if best is not None and Path(best.best_model_path).is_file():
            export_checkpoint(best.best_model_path, out / "student-best")
    return out / "student"
