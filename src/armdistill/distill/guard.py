"""Numerical-fault guard for distillation: a non-finite loss or gradient skips the optimiser step.

Lightning runs each micro-batch's backward, then (once per optimiser step, after the last one)
``on_before_optimizer_step``, gradient clipping and ``optimizer.step()``. When a micro-batch's
loss or the accumulated gradient holds a NaN or an infinity, the guard drops every gradient
there: AdamW passes over parameters without a gradient, so the weights and the optimiser state
stay bit-identical, clipping sees no gradient, and under fp16 AMP the GradScaler sees the same
skip. The step still counts towards ``trainer.max_steps`` and the lr schedule, as a GradScaler
skip does. ``trainer.max_consecutive_skips`` skips in a row stop the run with a
:class:`NonFiniteError`; weights that turn non-finite after an update stop it at once, before
any checkpoint of them is written.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor

from armdistill.distill.config import DistillConfig
from armdistill.errors import NonFiniteError
from armdistill.finite import nonfinite_names

log = logging.getLogger(__name__)


class NonFiniteGuard(Callback):
    """Skips optimiser steps over non-finite losses or gradients; keeps non-finite weights off disk.

    ``skipped_steps`` (the running count, logged as ``train/skipped_steps``) is saved in checkpoints.
    """

    def __init__(self, cfg: DistillConfig):
        self.max_consecutive_skips = cfg.trainer.max_consecutive_skips
        self.lr = cfg.optim.lr
        self.weight_decay = cfg.optim.weight_decay
        self.train_manifest = cfg.data.train
        self.skipped_steps = 0
        self.consecutive_skips = 0
        self._loss_finite: Tensor | None = None
        self._stepped = False

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: Tensor) -> None:
        # a device-side flag: no synchronisation per micro-batch
        finite = torch.isfinite(loss.detach())
        self._loss_finite = finite if self._loss_finite is None else self._loss_finite & finite

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        grads = {n: p.grad for n, p in pl_module.named_parameters() if p.grad is not None}
        loss_finite = True if self._loss_finite is None else bool(self._loss_finite)
        self._loss_finite = None
        bad_grads = nonfinite_names(grads)
        # every rank takes the same decision, or the replicas' weights would part
        self._stepped = trainer.strategy.reduce_boolean_decision(loss_finite and not bad_grads, all=True)
        if self._stepped:
            self.consecutive_skips = 0
        else:
            for param in pl_module.parameters():
                param.grad = None
            self.skipped_steps += 1
            self.consecutive_skips += 1
            self._report(trainer, loss_finite, bad_grads)
        pl_module.log("train/skipped_steps", float(self.skipped_steps), on_step=True, on_epoch=False)

    def _report(self, trainer: pl.Trainer, loss_finite: bool, bad_grads: list[str]) -> None:
        step = trainer.global_step
        what = "loss" if not loss_finite else f"gradient ({bad_grads[0]})" if bad_grads else "loss or gradient on another rank"
        if trainer.is_global_zero:
            log.warning("step %d: non-finite %s; optimiser step skipped (%d skipped so far, %d in a row)",
                        step, what, self.skipped_steps, self.consecutive_skips)
        if self.consecutive_skips >= self.max_consecutive_skips:
            raise NonFiniteError(
                f"step {step}: {self.consecutive_skips} optimiser steps in a row skipped for a non-finite loss or "
                f"gradient (last: {what}; trainer.max_consecutive_skips={self.max_consecutive_skips}). Likely causes: "
                f"optim.lr={self.lr:g} too high, or audio in {self.train_manifest} with extreme or corrupt samples. "
                "The newest checkpoint holds the last finite weights; resume from it with a lower optim.lr"
            )

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        # runs before ModelCheckpoint's hook (Lightning calls checkpoint callbacks last)
        if not self._stepped:
            return
        self._stepped = False
        bad = nonfinite_names(dict(pl_module.named_parameters()))
        if bad:
            raise NonFiniteError(
                f"step {trainer.global_step - 1}: the optimiser update made {len(bad)} weight tensors non-finite "
                f"({', '.join(bad[:3])}); optim.lr={self.lr:g} or optim.weight_decay={self.weight_decay:g} is likely "
                "too high. The newest checkpoint holds the last finite weights; resume from it with lower values"
            )

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        bad = nonfinite_names(checkpoint["state_dict"])
        if bad:
            raise NonFiniteError(f"step {trainer.global_step}: checkpoint not written: {len(bad)} tensors hold NaN "
                                 f"or inf values ({', '.join(bad[:3])})")

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        bad = nonfinite_names(checkpoint["state_dict"])
        if bad:
            raise NonFiniteError(f"{trainer.ckpt_path}: {len(bad)} tensors hold NaN or inf values ({', '.join(bad[:3])}); "
                                 "resume from an earlier checkpoint")

    def state_dict(self) -> dict[str, Any]:
        return {"skipped_steps": self.skipped_steps}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped_steps = int(state_dict["skipped_steps"])
