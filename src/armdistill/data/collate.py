"""Batching of variable-length waveforms."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def collate_audio(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Zero-pad ``{"index", "wav"}`` items into one batch.

    Returns ``wav`` ``[batch, max_samples]`` float, ``lengths`` ``[batch]`` valid samples,
    ``indices`` ``[batch]`` dataset indices, in the order given, and ``bad``: the
    :class:`~armdistill.data.bad_audio.BadItem` of every ``{"index", "bad"}`` item, which is
    left out of the tensors (a batch of bad items only has ``batch`` 0).
    """
    if not items:
        raise ValueError("collate_audio: empty batch")
    bad = [item["bad"] for item in items if "bad" in item]
    items = [item for item in items if "bad" not in item]
    for item in items:
        if item["wav"].dim() != 1:
            shape = tuple(item["wav"].shape)
            raise ValueError(f"collate_audio: item {item['index']} has shape {shape}; expected [samples]")
    lengths = torch.tensor([item["wav"].shape[0] for item in items], dtype=torch.long)
    longest = int(lengths.max()) if items else 0
    wav = torch.zeros(len(items), longest, dtype=items[0]["wav"].dtype if items else torch.float32)
    for row, item in enumerate(items):
        wav[row, : item["wav"].shape[0]] = item["wav"]
    indices = torch.tensor([int(item["index"]) for item in items], dtype=torch.long)
    return {"wav": wav, "lengths": lengths, "indices": indices, "bad": bad}
