"""Dynamic batches by padded duration: length buckets, DDP sharding, mid-epoch resume."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Sampler

from armdistill.checks import check_range
from armdistill.errors import DataError
from armdistill.frames import SAMPLE_RATE

def padding_fraction(batches: Sequence[Sequence[int]], sizes: Sequence[int]) -> float:
    """Share of padded samples when every batch is padded to its longest item."""
    padded = sum(len(batch) * max(sizes[i] for i in batch) for batch in batches)
    valid = sum(sizes[i] for batch in batches for i in batch)
    return 1.0 - valid / padded if padded else 0.0


class DynamicBatchSampler(Sampler[list[int]]):
    """Batches whose padded size ``len(batch) * longest item`` stays within ``max_seconds``.

    Items are split into ``num_buckets`` length quantiles; each epoch shuffles every bucket,
    packs it greedily, and shuffles the resulting batches, all from a generator seeded by
    ``(seed, epoch)``. Without ``shuffle`` items are packed in length order (for evaluation).
    Every rank builds the same global batch list; batches are split in half until their
    count divides ``world_size``, and rank ``r`` takes every ``world_size``-th batch from
    ``r``, so ranks are disjoint, together cover the data, and get equal batch counts (if
    every batch holds a single item and their count does not divide, the last few are left out).
    The number of batches may change slightly between epochs.

    ``state_dict`` records the epoch and how many batches this rank has yielded;
    ``load_state_dict`` makes the next iteration continue right after them. A DataLoader
    with workers draws batches ahead of training, so save with
    ``state_dict(batches_consumed=...)`` when the trainer knows how many it used.
    ``set_epoch`` must be called on this sampler itself at every epoch start.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        max_seconds: float,
        sample_rate: int = SAMPLE_RATE,
        num_buckets: int = 10,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        max_batch_size: int | None = None,
    ) -> None:
        if len(sizes) == 0:
            raise ValueError("DynamicBatchSampler: sizes is empty")
        check_range("DynamicBatchSampler.max_seconds", max_seconds, gt=0, error=ValueError)
        check_range("DynamicBatchSampler.num_buckets", num_buckets, ge=1, error=ValueError)
        check_range("DynamicBatchSampler.world_size", world_size, ge=1, error=ValueError)
        check_range("DynamicBatchSampler.rank", rank, ge=0, lt=world_size, error=ValueError)
        check_range("DynamicBatchSampler.max_batch_size", max_batch_size, ge=1, null=True, error=ValueError)
        if len(sizes) < world_size:
            raise DataError(f"DynamicBatchSampler: {len(sizes)} items cannot give each of {world_size} ranks a batch")
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.max_samples = int(max_seconds * sample_rate)
        too_long = np.flatnonzero(self.sizes > self.max_samples)
        if too_long.size:
            first = int(too_long[0])
            raise DataError(
                f"DynamicBatchSampler: {too_long.size} items exceed max_seconds={max_seconds} on their own "
                f"(first: index {first}, {self.sizes[first] / sample_rate:.2f} s); filter or crop them"
            )
        if (self.sizes <= 0).any():
            raise DataError(f"DynamicBatchSampler: item {int(np.argmin(self.sizes))} has no samples")
        self.sample_rate = sample_rate
        self.num_buckets = num_buckets
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.max_batch_size = max_batch_size
        by_length = np.argsort(self.sizes, kind="stable")
        self._by_length = by_length
        self._buckets = [b for b in np.array_split(by_length, min(num_buckets, len(by_length))) if b.size]
        self.epoch = 0
        self._yielded = 0
        self._resume_from = 0
        self._cache: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's order; a pending resume is kept when the epoch is the resumed one."""
        if epoch != self.epoch:
            self.epoch = epoch
            self._yielded = 0
            self._resume_from = 0

    def global_batches(self) -> list[list[int]]:
        """All ranks' batches of the current epoch, in order; rank ``r`` gets ``[r::world_size]``."""
        if self._cache is None or self._cache[0] != self.epoch:
            self._cache = (self.epoch, self._build(self.epoch))
        return self._cache[1]

    def _build(self, epoch: int) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, epoch])
        if self.shuffle:
            batches = [b for bucket in self._buckets for b in self._pack(rng.permutation(bucket))]
        else:
            batches = self._pack(self._by_length)
        batches = self._split_to_multiple(batches)
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def _pack(self, order: np.ndarray) -> list[list[int]]:
        batches: list[list[int]] = []
        batch: list[int] = []
        longest = 0
        for index in order.tolist():
            size = int(self.sizes[index])
            full = self.max_batch_size is not None and len(batch) >= self.max_batch_size
            if batch and (full or (len(batch) + 1) * max(longest, size) > self.max_samples):
                batches.append(batch)
                batch, longest = [], 0
            batch.append(index)
            longest = max(longest, size)
        batches.append(batch)
        return batches

    def _split_to_multiple(self, batches: list[list[int]]) -> list[list[int]]:
        # Halving the largest batch keeps the budget (a subset is never longer) and the coverage.
        # Only when every batch is a single item are the last few batches left out instead.
        batches = list(batches)
        while len(batches) % self.world_size:
            j = max(range(len(batches)), key=lambda k: len(batches[k]))
            if len(batches[j]) == 1:
                return batches[: len(batches) - len(batches) % self.world_size]
            half = len(batches[j]) // 2
            batches[j : j + 1] = [batches[j][:half], batches[j][half:]]
        return batches

    def _rank_batches(self) -> list[list[int]]:
        return self.global_batches()[self.rank :: self.world_size]

    def __len__(self) -> int:
        return len(self._rank_batches())

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._rank_batches()
        start, self._resume_from = self._resume_from, 0
        self._yielded = start
        for batch in batches[start:]:
            self._yielded += 1
            yield list(batch)

    def padding_fraction(self) -> float:
        """Padding share over all ranks' batches of the current epoch."""
        return padding_fraction(self.global_batches(), self.sizes.tolist())

    def _layout(self) -> dict[str, Any]:
        # settings that decide the batches: a state saved under others cannot resume exactly
        return {
            "seed": self.seed,
            "world_size": self.world_size,
            "num_items": len(self.sizes),
            "max_samples": self.max_samples,
            "num_buckets": self.num_buckets,
            "shuffle": self.shuffle,
            "max_batch_size": self.max_batch_size,
        }

    def state_dict(self, batches_consumed: int | None = None) -> dict[str, Any]:
        """``{"epoch", "batches_yielded", ...settings}``; ``batches_consumed`` overrides the count."""
        done = self._yielded if batches_consumed is None else batches_consumed
        return {"epoch": self.epoch, "batches_yielded": int(done), **self._layout()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("epoch", "batches_yielded"):
            if key not in state:
                raise ValueError(f"DynamicBatchSampler.load_state_dict: missing key {key!r}")
        layout = self._layout()
        for key in layout:
            if key in state and state[key] != layout[key]:
                raise ValueError(
                    f"DynamicBatchSampler.load_state_dict: {key}={state[key]!r} in the saved state but "
                    f"{layout[key]!r} now; the batches would differ, so the epoch cannot resume exactly"
                )
        self.epoch = int(state["epoch"])
        done = int(state["batches_yielded"])
        check_range("DynamicBatchSampler.load_state_dict: batches_yielded", done, ge=0, le=len(self), error=ValueError)
        self._resume_from = self._yielded = done
