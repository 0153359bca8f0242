"""Distillation run configuration: typed sections, recipe loading and the derived schedule.

A recipe is YAML with the sections below; ``teacher.path``, ``data.train`` and ``data.valid``
are left for the user. ``loss.objective`` picks what the student learns: masking distillation
(the paper), plain layer-to-layer distillation (its unmasked baseline) or DistilHuBERT's
prediction-head objective. The optimiser-step batch is stated in seconds of audio
(``data.effective_batch_seconds``) and reached on any GPU count: gradient accumulation is
computed from the device count and the per-device micro-batch budget, never hand-set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

from armdistill.checks import check_choice, check_range
from armdistill.config import ConfigError, apply_overrides, from_dict, load_yaml, to_dict
from armdistill.data.bad_audio import BadAudioPolicy
from armdistill.distill.losses import LossConfig, TargetNorm
from armdistill.distill.masking import MaskConfig
from armdistill.distill.speed import SpeedSection
from armdistill.frames import SAMPLE_RATE
from armdistill.models.config import PRESETS, StudentConfig, preset_config

Objective = Literal["masking", "layer", "distilhubert"]
OBJECTIVES: tuple[str, ...] = get_args(Objective)
# keys of the student section that are not StudentConfig fields
STUDENT_KEYS = ("preset", "init_from_teacher")
# student.proj_dim: the teacher's width, known once the teacher is loaded
PROJ_DIM_AUTO = "auto"


@dataclass
class TeacherSection:
    """The frozen teacher: a transformers directory or a fairseq / WavLM checkpoint, and how it
    runs (``Teacher``'s options: one batch and one CNN pass for both passes, SDPA attention)."""

    path: str = ""
    normalize: bool | None = None
    batch_masked: bool = True
    share_front_end: bool = True
    sdpa: bool = True


@dataclass
class DataSection:
    """Manifests and batching. ``micro_batch_seconds`` caps one device's padded micro-batch
    (batch x longest item); ``effective_batch_seconds`` is the audio per optimiser step.
    ``on_bad_audio``: ``error`` stops at the first unusable file, ``skip`` drops it (and lists
    it in ``output_dir/skipped.tsv``)."""

    train: str = ""
    valid: str | None = ""
    sample_rate: int = SAMPLE_RATE
    min_seconds: float | None = None
    max_seconds: float | None = None
    crop_seconds: float | None = None
    micro_batch_seconds: float = 240.0
    effective_batch_seconds: float = 1770.0
    max_batch_size: int | None = None
    num_buckets: int = 10
    num_workers: int = 4
    on_bad_audio: BadAudioPolicy = "error"

    def __post_init__(self) -> None:
        for name in ("sample_rate", "micro_batch_seconds", "effective_batch_seconds", "num_buckets"):
            check_range(f"data.{name}", getattr(self, name), gt=0)
        for name in ("min_seconds", "max_seconds", "crop_seconds", "max_batch_size"):
            check_range(f"data.{name}", getattr(self, name), gt=0, null=True)
        check_range("data.num_workers", self.num_workers, ge=0)


@dataclass
class LossSection(LossConfig):
    """The loss functions' settings plus what is learnt.

    objective: ``masking`` (student on masked input; masked frames -> unmasked teacher, the rest ->
    masked teacher), ``layer`` (unmasked input, every frame -> unmasked teacher) or
    ``distilhubert`` (unmasked; each head -> its ``layer_map`` teacher layer by L1 plus
    ``cos_weight`` x -log sigmoid(cosine); ``kind`` and the hint/rec weights do not apply).
    target_norm: how teacher layer outputs become targets (losses.normalize_targets), for every
    objective, masked and unmasked passes and validation alike; ``auto``: see
    :func:`resolve_target_norm`.
    """

    objective: Objective = "masking"
    cos_weight: float = 1.0
    target_norm: Literal["auto", TargetNorm] = "auto"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("objective", self.objective, OBJECTIVES)
        check_range("cos_weight", self.cos_weight, ge=0)
        if self.release_compat and self.objective == "distilhubert":
            raise ConfigError("release_compat: applies to the masking and layer objectives only, not distilhubert")

    @property
    def uses_mask(self) -> bool:
        """Whether training samples a mask and runs the teacher's masked pass."""
        return self.objective == "masking"


def resolve_target_norm(cfg: "DistillConfig", teacher_pre_ln: bool) -> "DistillConfig":
    """``loss.target_norm: auto`` made concrete for the loaded teacher: ``layer`` for a pre-LN stack
    (its layer outputs are the un-normalised residual stream, mostly the encoder input: small
    per-layer differences under a large shared part), ``none`` for a post-LN one (every layer
    output is already layer-normalised; the release recipes train on raw post-LN targets)."""
    if cfg.loss.target_norm != "auto":
        return cfg
    return replace(cfg, loss=replace(cfg.loss, target_norm="layer" if teacher_pre_ln else "none"))


def resolve_proj_dim(cfg: "DistillConfig", teacher_dim: int) -> "DistillConfig":
    """``student.proj_dim: auto`` made concrete: the loaded teacher's width."""
    if not cfg.proj_dim_auto:
        return cfg
    return replace(cfg, student={**cfg.student, "proj_dim": teacher_dim})


@dataclass
class OptimSection:
    """AdamW with linear warm-up, then linear (the release) or cosine decay to ``final_lr_fraction``."""

    lr: float = 5e-3
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    weight_decay: float = 0.01
    decay_biases: bool = False
    schedule: Literal["linear", "cosine"] = "linear"
    warmup_fraction: float = 0.05
    warmup_steps: int | None = None
    final_lr_fraction: float = 0.0

    def __post_init__(self) -> None:
        check_range("optim.lr", self.lr, gt=0)
        check_range("optim.eps", self.eps, gt=0)
        for i, beta in enumerate(self.betas):
            check_range(f"optim.betas[{i}]", beta, ge=0, lt=1)
        check_range("optim.weight_decay", self.weight_decay, ge=0)
        check_range("optim.warmup_fraction", self.warmup_fraction, ge=0, lt=1)
        check_range("optim.warmup_steps", self.warmup_steps, ge=0, null=True)
        check_range("optim.final_lr_fraction", self.final_lr_fraction, ge=0, le=1)


@dataclass
class TrainerSection:
    """Lightning Trainer settings; steps are optimiser steps."""

    max_steps: int = 1000
    accelerator: str = "auto"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    find_unused_parameters: bool = False
    precision: Literal["32-true", "16-mixed", "bf16-mixed"] = "bf16-mixed"
    gradient_clip_val: float | None = None
    checkpoint_every_steps: int = 5000
    keep_checkpoints: int = 3
    val_every_steps: int = 5000
    limit_val_batches: int | None = None
    log_every_steps: int = 50
    loggers: list[Literal["tensorboard", "csv"]] = field(default_factory=lambda: ["tensorboard", "csv"])
    progress_bar: Literal["rich", "tqdm", "none"] = "rich"
    deterministic: bool = False
    # optimiser steps in a row skipped for a non-finite loss or gradient before the run stops
    max_consecutive_skips: int = 20

    def __post_init__(self) -> None:
        for name in ("max_steps", "devices", "num_nodes", "checkpoint_every_steps", "val_every_steps",
                     "log_every_steps", "max_consecutive_skips"):
            check_range(f"trainer.{name}", getattr(self, name), gt=0)
        for name in ("gradient_clip_val", "limit_val_batches"):
            check_range(f"trainer.{name}", getattr(self, name), gt=0, null=True)
        if self.keep_checkpoints < -1 or self.keep_checkpoints == 0:
            raise ConfigError(f"trainer.keep_checkpoints: expected a count >= 1 or -1 (all), got {self.keep_checkpoints}")


@dataclass
class DistillConfig:
    """A whole distillation run. ``student`` is the recipe's flat student section: ``preset``,
    ``init_from_teacher`` (copy the teacher's tensors of matching name and shape before training)
    and any StudentConfig field to override (e.g. ``reuse_mode``); ``proj_dim: auto`` (the
    default) is the teacher's width, set by :func:`resolve_proj_dim` once the teacher is loaded.

    Validation resolves the section once: :attr:`student_model` (the StudentConfig) and
    :attr:`layer_map` (the teacher layer each projection head learns, ``loss.layer_map`` or the
    identity)."""

    name: str = ""
    output_dir: str = "runs/distill"
    seed: int = 0
    teacher: TeacherSection = field(default_factory=TeacherSection)
    student: dict[str, Any] = field(default_factory=lambda: {"preset": "armhubert"})
    data: DataSection = field(default_factory=DataSection)
    mask: MaskConfig = field(default_factory=MaskConfig)
    loss: LossSection = field(default_factory=LossSection)
    optim: OptimSection = field(default_factory=OptimSection)
    trainer: TrainerSection = field(default_factory=TrainerSection)
    speed: SpeedSection = field(default_factory=SpeedSection)

    def __post_init__(self) -> None:
        init = self.student.get("init_from_teacher", False)
        if not isinstance(init, bool):
            raise ConfigError(f"student.init_from_teacher: expected true/false, got {init!r}")
        self.init_from_teacher: bool = init
        self._model = self._student_config()
        self.head_layers: list[int] = self._model.head_layers
        heads = self.head_layers
        if self.loss.layer_map is not None and len(self.loss.layer_map) != len(heads):
            raise ConfigError(
                f"loss.layer_map: {len(self.loss.layer_map)} teacher layers for the student's {len(heads)} "
                f"projection heads (reading student layers {heads})"
            )
        self.layer_map: list[int] = list(range(len(heads))) if self.loss.layer_map is None else list(self.loss.layer_map)

    @property
    def proj_dim_auto(self) -> bool:
        """Whether ``student.proj_dim`` still waits for the teacher's width."""
        return self.student.get("proj_dim", PROJ_DIM_AUTO) == PROJ_DIM_AUTO

    @property
    def student_model(self) -> StudentConfig:
        """The resolved student: the preset with this section's overrides."""
        if self.proj_dim_auto:
            raise RuntimeError("student.proj_dim: auto is the teacher's width; resolve_proj_dim(cfg, teacher.dim) first")
        return self._model

    def _student_config(self) -> StudentConfig:
        """The preset with this section's overrides, type-checked like any other section; an
        unresolved ``proj_dim: auto`` stands in as width 1 (nothing validated depends on the width)."""
        overrides = {k: v for k, v in self.student.items() if k not in STUDENT_KEYS}
        if self.proj_dim_auto:
            overrides["proj_dim"] = 1
        preset = self.student.get("preset")
        check_choice("student.preset", preset, sorted(PRESETS))
        base = to_dict(preset_config(preset))
        unknown = sorted(set(overrides) - set(base))
        if unknown:
            raise ConfigError(
                f"unknown config key 'student.{unknown[0]}'; valid keys here: {[*STUDENT_KEYS, *sorted(base)]}"
            )
        return from_dict(StudentConfig, {**base, **overrides}, prefix="student")

    def check_paths(self) -> None:
        """Training needs the paths a recipe leaves blank; ``data.valid: null`` skips validation."""
        for key, value in (("teacher.path", self.teacher.path), ("data.train", self.data.train), ("data.valid", self.data.valid)):
            if value == "":
                raise ConfigError(f"{key}: not set; give it on the command line, e.g. {key}=/path/to/it")


@dataclass
class Plan:
    """What the recipe implies on this hardware: processes, accumulation and schedule lengths."""

    world_size: int
    accumulate: int
    micro_batch_seconds: float
    effective_batch_seconds: float
    step_capacity_seconds: float
    max_steps: int
    warmup_steps: int
    schedule: str
    peak_lr: float


def plan(cfg: DistillConfig) -> Plan:
    """Derive accumulation ``ceil(effective / (devices x nodes x micro))`` and warm-up steps."""
    world = cfg.trainer.devices * cfg.trainer.num_nodes
    # the epsilon keeps float noise in an exact ratio (e.g. 1770 / 442.5) from adding a micro-batch
    accumulate = max(1, math.ceil(cfg.data.effective_batch_seconds / (world * cfg.data.micro_batch_seconds) - 1e-9))
    warmup = cfg.optim.warmup_steps
    if warmup is None:
        warmup = round(cfg.optim.warmup_fraction * cfg.trainer.max_steps)
    if warmup >= cfg.trainer.max_steps:
        raise ConfigError(f"optim.warmup_steps: {warmup} leaves no decay within trainer.max_steps={cfg.trainer.max_steps}")
    return Plan(
        world_size=world,
        accumulate=accumulate,
        micro_batch_seconds=cfg.data.micro_batch_seconds,
        effective_batch_seconds=cfg.data.effective_batch_seconds,
        step_capacity_seconds=world * accumulate * cfg.data.micro_batch_seconds,
        max_steps=cfg.trainer.max_steps,
        warmup_steps=warmup,
        schedule=cfg.optim.schedule,
        peak_lr=cfg.optim.lr,
    )


def load_config(path: str | Path, overrides: list[str] | None = None) -> DistillConfig:
    """Read a recipe and apply dotted ``key=value`` overrides; unknown keys are errors."""
    data = apply_overrides(load_yaml(path), list(overrides or []))
    try:
        return from_dict(DistillConfig, data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def objective_summary(cfg: DistillConfig) -> dict[str, Any]:
    """What one training step runs and matches: teacher passes, the student's input and, per
    projection head, ``[student layer it reads, teacher layer it learns]`` (0-based)."""
    return {
        "name": cfg.loss.objective,
        "teacher_passes": ["masked", "unmasked"] if cfg.loss.uses_mask else ["unmasked"],
        "student_input": "masked" if cfg.loss.uses_mask else "unmasked",
        "head_targets": [[s, t] for s, t in zip(cfg.head_layers, cfg.layer_map)],
        "init_from_teacher": cfg.init_from_teacher,
    }


def resolved_dict(cfg: DistillConfig) -> dict[str, Any]:
    """The full config as plain data, the resolved student, the objective and the derived plan
    (for printing and saving); before the teacher is loaded the student's ``proj_dim`` reads ``auto``."""
    out = to_dict(cfg)
    student = to_dict(cfg._model)
    if cfg.proj_dim_auto:
        student["proj_dim"] = PROJ_DIM_AUTO
    out["resolved"] = {"student": student, "objective": objective_summary(cfg), "plan": to_dict(plan(cfg))}
    return out
