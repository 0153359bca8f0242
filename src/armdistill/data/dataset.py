"""Waveform dataset over a TSV manifest, with duration filters, seeded random crops and bad-audio handling."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from armdistill.checks import check_range
from armdistill.data.audio import AudioFileError, load_audio
from armdistill.data.bad_audio import BadAudioPolicy, BadItem
from armdistill.data.manifest import read_labels, read_manifest
from armdistill.errors import DataError
from armdistill.frames import SAMPLE_RATE


class AudioDataset(Dataset):
    """Utterances of a manifest whose duration lies in ``[min_seconds, max_seconds]``.

    Manifest sizes are samples at ``sample_rate`` (what ``armdistill manifest`` records); the
    sampler batches by them, so a file whose decoded length disagrees is an error rather
    than a silent break of the batch budget. ``crop_seconds`` caps each item at a random
    window, drawn from a generator seeded by ``(seed, epoch, index)`` so that crops are
    reproducible, differ per epoch (``set_epoch``) and never touch the global RNG.

    Bad audio: entries the manifest already lists as shorter than ``min_samples`` (one model
    frame) raise at construction under ``on_bad_audio="error"``; under ``"skip"`` they are left
    out and listed in ``rejected``. Every read checks the file (:func:`load_audio`);
    ``known_bad`` (manifest line -> problem, from an earlier run's skip log) fails those lines
    without reading them. Indexing raises :class:`AudioFileError` naming the manifest line;
    batched reads (a DataLoader) with ``defer_errors`` return ``{"index", "bad": BadItem}``
    instead, so the main process, not a worker, raises or skips it.
    """

    def __init__(
        self,
        manifest_path: str | Path,
        sample_rate: int = SAMPLE_RATE,
        min_seconds: float | None = None,
        max_seconds: float | None = None,
        crop_seconds: float | None = None,
        resample: bool = True,
        seed: int = 0,
        min_samples: int = 1,
        on_bad_audio: BadAudioPolicy = "error",
        known_bad: Mapping[int, str] | None = None,
        defer_errors: bool = False,
    ) -> None:
        self.manifest_path = Path(manifest_path)
        self.manifest = read_manifest(self.manifest_path)
        self.sample_rate = sample_rate
        self.resample = resample
        self.seed = seed
        self.epoch = 0
        self.min_samples = min_samples
        self.known_bad = dict(known_bad or {})
        self.defer_errors = defer_errors
        check_range("crop_seconds", crop_seconds, gt=0, null=True, error=ValueError)
        self.crop_samples = None if crop_seconds is None else int(round(crop_seconds * sample_rate))
        low = 0 if min_seconds is None else min_seconds * sample_rate
        high = float("inf") if max_seconds is None else max_seconds * sample_rate
        # positions in the manifest of the kept utterances; dataset index i is manifest entry kept[i]
        listed = [i for i, n in enumerate(self.manifest.num_samples) if low <= n <= high]
        self.rejected = [self._bad(i, self._too_short(i)) for i in listed if self.manifest.num_samples[i] < min_samples]
        if self.rejected and on_bad_audio == "error":
            raise self.rejected[0].error()
        self.kept = [i for i in listed if self.manifest.num_samples[i] >= min_samples]
        if not self.kept:
            raise DataError(
                f"{self.manifest_path}: no utterance lasts between {min_seconds} and {max_seconds} s "
                f"at {sample_rate} Hz ({len(self.manifest)} listed, {len(self.rejected)} shorter than one frame)"
            )

    def _too_short(self, entry: int) -> AudioFileError:
        size = self.manifest.num_samples[entry]
        return AudioFileError(self.manifest.audio_path(entry), f"the manifest lists {size} samples, "
                              f"shorter than one frame ({self.min_samples} samples)")

    def _bad(self, entry: int, err: AudioFileError) -> BadItem:
        return BadItem.from_error(self.manifest_path, self.manifest.line_numbers[entry], err)

    def __len__(self) -> int:
        return len(self.kept)

    @property
    def sizes(self) -> list[int]:
        """Samples per kept item as returned by ``__getitem__`` (after the crop cap)."""
        cap = self.crop_samples
        sizes = [self.manifest.num_samples[i] for i in self.kept]
        return sizes if cap is None else [min(n, cap) for n in sizes]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def labels(self, ext: str) -> list[str]:
        """Lines of the label file beside the manifest (``train.tsv`` -> ``train.ltr``), aligned with the kept items."""
        lines = read_labels(self.manifest_path, ext, expected=len(self.manifest))
        return [lines[i] for i in self.kept]

    def __getitem__(self, index: int) -> dict[str, object]:
        """``{"index": index, "wav": FloatTensor[samples]}``; a bad file raises :class:`AudioFileError`."""
        entry = self.kept[index]
        path = self.manifest.audio_path(entry)
        where = f"{self.manifest_path}:{self.manifest.line_numbers[entry]}"
        if self.manifest.line_numbers[entry] in self.known_bad:
            raise AudioFileError(path, self.known_bad[self.manifest.line_numbers[entry]], where)
        size = self.manifest.num_samples[entry]
        start, stop = 0, None
        if self.crop_samples is not None and size > self.crop_samples:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            start = int(rng.integers(0, size - self.crop_samples + 1))
            stop = start + self.crop_samples
        try:
            wav = load_audio(path, self.sample_rate, self.resample, start=start, stop=stop, expected=size,
                             min_samples=self.min_samples)
        except AudioFileError as err:
            raise err.at(where) from err
        return {"index": index, "wav": torch.from_numpy(np.ascontiguousarray(wav))}

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, object]]:
        """The items of one batch (what a DataLoader reads); see ``defer_errors``."""
        if not self.defer_errors:
            return [self[i] for i in indices]
        items: list[dict[str, object]] = []
        for index in indices:
            try:
                items.append(self[index])
            except AudioFileError as err:
                items.append({"index": index, "bad": self._bad(self.kept[index], err)})
        return items
