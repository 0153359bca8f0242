"""Dynamic batch sampler: budget, padding, DDP sharding, determinism and exact mid-epoch resume."""

from __future__ import annotations

import numpy as np
import pytest

from armdistill.data.sampler import DynamicBatchSampler, padding_fraction

RATE = 16000


def skewed_sizes(n: int = 3000, seed: int = 0) -> list[int]:
    """Mostly short utterances with a long tail, 0.5-30 s."""
    rng = np.random.default_rng(seed)
    seconds = np.clip(rng.lognormal(mean=1.0, sigma=0.9, size=n), 0.5, 30.0)
    return (seconds * RATE).astype(int).tolist()


@pytest.mark.parametrize("max_batch_size", [None, 7])
@pytest.mark.parametrize("world_size", [1, 3])
def test_budget_respected(world_size: int, max_batch_size: int | None) -> None:
    sizes = skewed_sizes()
    for rank in range(world_size):
        sampler = DynamicBatchSampler(
            sizes, max_seconds=40, world_size=world_size, rank=rank, max_batch_size=max_batch_size, seed=3
        )
        for epoch in range(2):
            sampler.set_epoch(epoch)
            for batch in sampler:
                assert len(batch) * max(sizes[i] for i in batch) <= 40 * RATE
                if max_batch_size is not None:
                    assert len(batch) <= max_batch_size


def test_padding_lower_than_fixed_count_random_batches() -> None:
    sizes = skewed_sizes()
    sampler = DynamicBatchSampler(sizes, max_seconds=60, num_buckets=10, seed=1)
    batches = sampler.global_batches()
    mean_batch = round(len(sizes) / len(batches))
    order = np.random.default_rng(1).permutation(len(sizes)).tolist()
    fixed = [order[i : i + mean_batch] for i in range(0, len(order), mean_batch)]
    dynamic, baseline = sampler.padding_fraction(), padding_fraction(fixed, sizes)
    assert dynamic == pytest.approx(padding_fraction(batches, sizes))
    assert baseline > 0.5
    assert dynamic < 0.2
    finer = DynamicBatchSampler(sizes, max_seconds=60, num_buckets=40, seed=1)
    assert finer.padding_fraction() < dynamic / 2


@pytest.mark.parametrize("world_size", [2, 3, 4])
def test_ddp_ranks_disjoint_covering_equal(world_size: int) -> None:
    sizes = skewed_sizes(n=1001)
    for epoch in (0, 5):
        per_rank = []
        for rank in range(world_size):
            sampler = DynamicBatchSampler(sizes, max_seconds=50, seed=7, rank=rank, world_size=world_size)
            sampler.set_epoch(epoch)
            batches = list(sampler)
            assert len(batches) == len(sampler)
            per_rank.append(batches)
        assert len({len(b) for b in per_rank}) == 1
        flat = [i for batches in per_rank for batch in batches for i in batch]
        assert len(flat) == len(sizes)
        assert sorted(flat) == list(range(len(sizes)))


def test_ddp_single_item_batches_leave_out_remainder() -> None:
    # every item fills the budget on its own: 5 batches cannot be split, so 4 are dealt to 2 ranks
    sizes = [10 * RATE] * 5
    ranks = [list(DynamicBatchSampler(sizes, max_seconds=10, rank=r, world_size=2)) for r in range(2)]
    assert [len(b) for b in ranks] == [2, 2]
    flat = [i for batches in ranks for batch in batches for i in batch]
    assert len(set(flat)) == 4


def test_mid_epoch_resume_equals_uninterrupted() -> None:
    sizes = skewed_sizes(n=800)
    kwargs = dict(max_seconds=45, seed=11, rank=1, world_size=2)
    reference = DynamicBatchSampler(sizes, **kwargs)
    reference.set_epoch(2)
    full = list(reference)

    interrupted = DynamicBatchSampler(sizes, **kwargs)
    interrupted.set_epoch(2)
    iterator = iter(interrupted)
    head = [next(iterator) for _ in range(5)]
    state = interrupted.state_dict()
    assert state["epoch"] == 2 and state["batches_yielded"] == 5

    resumed = DynamicBatchSampler(sizes, **kwargs)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)  # a trainer re-announcing the resumed epoch must not restart it
    assert len(resumed) == len(full)
    tail = list(resumed)
    assert head + tail == full
    assert resumed.state_dict()["batches_yielded"] == len(full)
    # the following iteration of the same epoch is a whole one again
    assert list(resumed) == full
    resumed.set_epoch(3)
    assert resumed.state_dict()["batches_yielded"] == 0


def test_resume_with_consumed_count_and_mismatched_settings() -> None:
    sizes = skewed_sizes(n=400)
    sampler = DynamicBatchSampler(sizes, max_seconds=45, seed=2)
    full = list(sampler)
    state = sampler.state_dict(batches_consumed=3)
    resumed = DynamicBatchSampler(sizes, max_seconds=45, seed=2)
    resumed.load_state_dict(state)
    assert list(resumed) == full[3:]
    other = DynamicBatchSampler(sizes, max_seconds=45, seed=2, world_size=2)
    with pytest.raises(ValueError, match="world_size"):
        other.load_state_dict(state)
    with pytest.raises(ValueError, match="batches_yielded"):
        DynamicBatchSampler(sizes, max_seconds=45, seed=2).load_state_dict({"epoch": 0})


def test_epoch_changes_order_deterministically() -> None:
    sizes = skewed_sizes(n=500)
    a = DynamicBatchSampler(sizes, max_seconds=45, seed=4)
    b = DynamicBatchSampler(sizes, max_seconds=45, seed=4)
    epoch0 = list(a)
    a.set_epoch(1)
    b.set_epoch(1)
    epoch1 = list(a)
    assert epoch1 == list(b)
    assert epoch1 != epoch0
    assert sorted(i for batch in epoch1 for i in batch) == list(range(len(sizes)))
    a.set_epoch(0)
    assert list(a) == epoch0
    assert list(DynamicBatchSampler(sizes, max_seconds=45, seed=5)) != epoch0


def test_no_shuffle_packs_in_length_order() -> None:
    sizes = skewed_sizes(n=300)
    batches = list(DynamicBatchSampler(sizes, max_seconds=45, shuffle=False))
    flat = [i for batch in batches for i in batch]
    assert [sizes[i] for i in flat] == sorted(sizes)


def test_item_longer_than_budget_is_an_error() -> None:
    with pytest.raises(ValueError, match="index 1"):
        DynamicBatchSampler([RATE, 31 * RATE, RATE], max_seconds=30)
