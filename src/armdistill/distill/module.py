"""LightningModule for distillation, by the objective ``loss.objective`` names.

``masking``, one training step: sample a span mask, run the frozen teacher masked and unmasked,
run the student on the same mask, and match per-layer projections (masked frames -> unmasked
teacher, unmasked frames -> masked teacher). ``layer`` and ``distilhubert`` sample no mask and
run the teacher once, unmasked. Validation uses no mask anywhere.
"""

from __future__ import annotations

import math
import random
from functools import partial
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch import Tensor

from armdistill.config import ConfigError, to_dict
from armdistill.distill.config import DistillConfig, Plan, resolve_target_norm
from armdistill.distill.losses import (
    LossOutput,
    distilhubert_loss,
    layer_distillation_loss,
    masking_distillation_loss,
    normalize_targets,
)
from armdistill.distill.masking import compute_mask
from armdistill.distill.speed import compile_models, pad_to_multiple, resolve_reuse_kernel
from armdistill.models.student import Student
from armdistill.teachers import Teacher, TeacherOutput


def lr_factor(step: int, warmup: int, total: int, schedule: str, final: float) -> float:
    """Multiplier of the peak lr: linear warm-up from 0, then linear or cosine decay to ``final``."""
    if step < warmup:
        return step / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    decay = 1.0 - progress if schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
    return final + (1.0 - final) * decay


def rng_states() -> dict[str, Any]:
    """Every global RNG state as tensors and plain tuples (loadable with ``weights_only=True``)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    n = states["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class DistillModule(pl.LightningModule):
    """The student is the only submodule; the teacher stays outside the module tree, so
    checkpoints, DDP and ``.train()`` never touch it."""

    def __init__(
        self,
        student: Student,
        teacher: Teacher,
        cfg: DistillConfig,
        plan: Plan,
        teacher_fingerprint: str,
        teacher_init: list[str] | None = None,
    ):
        """``teacher_init``: names of the student tensors copied from the teacher (None: none were).
        ``self.cfg`` is ``cfg`` with ``loss.target_norm`` resolved against the teacher."""
        super().__init__()
        self.student = student
        object.__setattr__(self, "teacher", teacher)
        self.cfg = resolve_target_norm(cfg, teacher.pre_ln)
        self.plan = plan
        self.teacher_fingerprint = teacher_fingerprint
        self.teacher_init = teacher_init
        # unmasked objectives never read the mask embedding; a parameter without a gradient
        # would also stop DDP (find_unused_parameters is off)
        student.mask_embedding.requires_grad_(cfg.loss.uses_mask)

    def on_fit_start(self) -> None:
        # the strategy has placed the student by now; the teacher follows it
        self.teacher.to(self.device)
        if self.cfg.speed.compile:
            compile_models(self.student, self.teacher)

    def _micro_batch_rng(self, batch_idx: int) -> np.random.Generator:
        """Seed dropout and return the mask generator from (seed, step, micro-batch position).

        The position counts micro-batches of one optimiser step across ranks in the order the
        sampler deals them (rank r takes every world-size-th batch), so R ranks x 1 micro-batch and
        1 rank accumulating R micro-batches draw identical masks and dropout, and a resumed run
        draws what the uninterrupted one would have.
        """
        position = (batch_idx % self.plan.accumulate) * self.trainer.world_size + self.global_rank
        torch_seed, mask_seed = np.random.SeedSequence([self.cfg.seed, self.global_step, position]).generate_state(2)
        torch.manual_seed(int(torch_seed))
        return np.random.default_rng(int(mask_seed))

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        wav, lengths = batch["wav"], batch["lengths"]  # [batch, samples], [batch]
        if wav.shape[0] == 0:
            # every file of the micro-batch was skipped as bad audio: a zero loss on every
            # parameter keeps the step (and DDP's gradient reduction) as it is
            return sum(p.sum() for p in self.student.parameters() if p.requires_grad) * 0.0
        result, mask = self.step_loss(wav, lengths, self._micro_batch_rng(batch_idx))
        if mask is not None:
            frames = self.student.frame_lengths(lengths)
            self.log("train/mask_fraction", mask.sum() / frames.sum(), on_step=True, batch_size=wav.shape[0])
        self._log("train", result, wav.shape[0])
        self.log("train/batch_seconds", float(lengths.sum()) / self.cfg.data.sample_rate, on_step=True, batch_size=wav.shape[0])
        return result.loss

    def step_loss(self, wav: Tensor, lengths: Tensor, rng: np.random.Generator) -> tuple[LossOutput, Tensor | None]:
        """A training micro-batch's loss and mask: ``wav`` ``[batch, samples]`` is padded to a
        multiple of ``speed.pad_to_seconds``; the mask ``[batch, frames]`` (masking objective;
        None otherwise) is drawn from ``rng``."""
        if self.cfg.speed.pad_to_seconds is not None:
            wav = pad_to_multiple(wav, round(self.cfg.speed.pad_to_seconds * self.cfg.data.sample_rate))
        mask = None
        if self.cfg.loss.uses_mask:
            frames = self.student.frame_lengths(lengths)
            total = int(self.student.frame_lengths(lengths.new_tensor([wav.shape[1]]))[0])
            mask = compute_mask(wav.shape[0], total, frames.cpu(), self.cfg.mask, rng).to(wav.device)
        return self.distillation_loss(wav, lengths, mask), mask

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor | None:
        if batch["wav"].shape[0] == 0:  # every file was skipped as bad audio
            return None
        result = self.distillation_loss(batch["wav"], batch["lengths"])
        self._log("val", result, batch["wav"].shape[0])
        return result.loss

    def distillation_loss(self, wav: Tensor, lengths: Tensor, mask: Tensor | None = None) -> LossOutput:
        """The objective's loss for ``wav`` ``[batch, samples]`` with ``lengths`` ``[batch]``.

        ``mask`` ``[batch, frames]`` (masking objective only) masks student and teacher; without
        it the masking objective reduces to layer-to-layer distillation, as in validation.
        """
        loss_cfg = self.cfg.loss
        if mask is not None and not loss_cfg.uses_mask:
            raise ValueError(f"loss.objective={loss_cfg.objective!r} takes no mask")
        # the stored-map kernel pays only where a backward pass follows
        kernel = resolve_reuse_kernel(self.cfg.speed.reuse_kernel, wav.device) if torch.is_grad_enabled() else "sdpa"

        def targets(teacher_out: TeacherOutput) -> tuple[Tensor, ...]:
            return normalize_targets(teacher_out.layers, teacher_out.lengths, loss_cfg.target_norm)

        if mask is not None:
            with torch.no_grad():
                teacher_masked, teacher_unmasked = self.teacher.masked_and_unmasked(wav, lengths, mask)
            out = self.student(wav, lengths, mask, kernel=kernel)
            return masking_distillation_loss(
                out.projections, targets(teacher_masked), targets(teacher_unmasked), mask, out.padding_mask, loss_cfg
            )
        teacher_layers = targets(self.teacher.layer_outputs(wav, lengths))
        out = self.student(wav, lengths, kernel=kernel)
        if loss_cfg.objective == "distilhubert":
            return distilhubert_loss(out.projections, [teacher_layers[i] for i in self.cfg.layer_map], out.padding_mask,
                                     loss_cfg.cos_weight)
        return layer_distillation_loss(out.projections, teacher_layers, out.padding_mask, loss_cfg)

    def _log(self, stage: str, result: LossOutput, batch_size: int) -> None:
        training = stage == "train"
        # per step while training; validation averages over the whole held-out set and all ranks
        options = {"on_step": training, "on_epoch": not training, "sync_dist": not training, "batch_size": batch_size}
        self.log(f"{stage}/loss", result.loss.detach(), prog_bar=True, **options)
        self.log_dict({f"{stage}/{k}": v for k, v in result.terms.items()}, **options)

    def configure_optimizers(self) -> dict[str, Any]:
        opt = self.cfg.optim
        decay, no_decay = [], []
        for name, param in self.student.named_parameters():
            if param.requires_grad:
                (no_decay if name.endswith("bias") and not opt.decay_biases else decay).append(param)
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": opt.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=opt.lr, betas=opt.betas, eps=opt.eps,
        )
        factor = partial(lr_factor, warmup=self.plan.warmup_steps, total=self.plan.max_steps, schedule=opt.schedule,
                         final=opt.final_lr_fraction)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # plain data only, so that resuming can load with weights_only=True
        checkpoint["armdistill"] = {
            "config": to_dict(self.cfg),
            "student_config": to_dict(self.student.config),
            "teacher_fingerprint": self.teacher_fingerprint,
            "teacher_init": self.teacher_init,
            "rng_states": rng_states(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("armdistill", {}).get("teacher_fingerprint")
        if saved != self.teacher_fingerprint:
            raise ConfigError(
                f"teacher.path: the checkpoint was trained against teacher {saved}, but teacher.path gives "
                f"{self.teacher_fingerprint}"
            )
        set_rng_states(checkpoint["armdistill"]["rng_states"])
