"""Training data for distillation: the resumable loader, its progress callback and the data module.

:class:`DistillData` builds one loader per manifest once the strategy knows this process's rank;
the training loader is a :class:`ResumableLoader`, whose position Lightning saves in checkpoints
and :class:`EpochProgress` keeps in step with the training loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader

from armdistill.config import ConfigError
from armdistill.data.bad_audio import SKIPPED_NAME, BadItem, SkipLog
from armdistill.data.collate import collate_audio
from armdistill.data.dataset import AudioDataset
from armdistill.data.sampler import DynamicBatchSampler
from armdistill.distill.checkpoints import say
from armdistill.distill.config import DistillConfig
from armdistill.frames import receptive_field


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
        self.min_samples = receptive_field([(k, s) for _, k, s in cfg.student_model.conv_layers])
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
