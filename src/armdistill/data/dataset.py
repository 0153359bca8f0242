"""Waveform dataset over a TSV manifest, with duration filters and seeded random crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from armdistill.data.audio import load_audio
from armdistill.data.manifest import read_labels, read_manifest
from armdistill.errors import DataError


class AudioDataset(Dataset):
    """Utterances of a manifest whose duration lies in ``[min_seconds, max_seconds]``.

    Manifest sizes are samples at ``sample_rate`` (what ``armdistill manifest`` records); the
    sampler batches by them, so a file whose decoded length disagrees is an error rather
    than a silent break of the batch budget. ``crop_seconds`` caps each item at a random
    window, drawn from a generator seeded by ``(seed, epoch, index)`` so that crops are
    reproducible, differ per epoch (``set_epoch``) and never touch the global RNG.
    """

    def __init__(
        self,
        manifest_path: str | Path,
        sample_rate: int = 16000,
        min_seconds: float | None = None,
        max_seconds: float | None = None,
        crop_seconds: float | None = None,
        resample: bool = True,
        seed: int = 0,
    ) -> None:
        self.manifest_path = Path(manifest_path)
        self.manifest = read_manifest(self.manifest_path)
        self.sample_rate = sample_rate
        self.resample = resample
        self.seed = seed
        self.epoch = 0
        if crop_seconds is not None and crop_seconds <= 0:
            raise ValueError(f"crop_seconds must be positive, got {crop_seconds}")
        self.crop_samples = None if crop_seconds is None else int(round(crop_seconds * sample_rate))
        low = 0 if min_seconds is None else min_seconds * sample_rate
        high = float("inf") if max_seconds is None else max_seconds * sample_rate
        # positions in the manifest of the kept utterances; dataset index i is manifest entry kept[i]
        self.kept = [i for i, n in enumerate(self.manifest.num_samples) if low <= n <= high]
        if not self.kept:
            raise DataError(
                f"{self.manifest_path}: no utterance lasts between {min_seconds} and {max_seconds} s "
                f"at {sample_rate} Hz ({len(self.manifest)} listed)"
            )

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
        """``{"index": index, "wav": FloatTensor[samples]}``."""
        entry = self.kept[index]
        size = self.manifest.num_samples[entry]
        start, stop = 0, None
        if self.crop_samples is not None and size > self.crop_samples:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            start = int(rng.integers(0, size - self.crop_samples + 1))
            stop = start + self.crop_samples
        expected = size if stop is None else stop - start
        where = f"{self.manifest_path}:{self.manifest.line_numbers[entry]}"
        try:
            wav = load_audio(self.manifest.audio_path(entry), self.sample_rate, self.resample, start=start, stop=stop)
        except (FileNotFoundError, ValueError) as err:
            raise type(err)(f"{where}: {err}") from err
        if len(wav) != expected:
            raise DataError(
                f"{where}: {self.manifest.paths[entry]} gives {len(wav)} samples at {self.sample_rate} Hz "
                f"where {expected} were expected (the manifest lists {size}); rebuild the manifest"
            )
        return {"index": index, "wav": torch.from_numpy(np.ascontiguousarray(wav))}
