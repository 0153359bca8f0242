"""Torch's intra-op thread count for one block of work (the demo's stages, a probe's training,
feature extraction), and a count that suits how busy the machine is.

On a shared CPU, torch's default (one thread per core) collapses when other jobs hold cores:
its threads spin waiting for one another (on a loaded 2-core machine, batch-1 feature
extraction measured 1.17 s with two threads vs 0.027 s with one).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch


def free_cores() -> int:
    """Cores the other processes leave idle by the 1-minute load average, at least 1."""
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:  # no load average on this platform
        return cores
    return max(1, min(cores, round(cores - load)))


def auto_threads() -> int:
    """Torch's current thread count, lowered to the free cores."""
    return max(1, min(torch.get_num_threads(), free_cores()))


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run the block with ``count`` torch threads (None: unchanged), then restore the previous count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count or previous)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
