"""Batching of variable-length waveforms."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def collate_audio(items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Zero-pad ``{"index", "wav"}`` items into one batch.

    Returns ``wav`` ``[batch, max_samples]`` float, ``lengths`` ``[batch]`` valid samples and
    ``indices`` ``[batch]`` dataset indices, in the order given.
    """
    if not items:
        raise ValueError("collate_audio: empty batch")
    for item in items:
        if item["wav"].dim() != 1:
            shape = tuple(item["wav"].shape)
            raise ValueError(f"collate_audio: item {item['index']} has shape {shape}; expected [samples]")
    lengths = torch.tensor([item["wav"].shape[0] for item in items], dtype=torch.long)
    wav = torch.zeros(len(items), int(lengths.max()), dtype=items[0]["wav"].dtype)
    for row, item in enumerate(items):
        wav[row, : item["wav"].shape[0]] = item["wav"]
    indices = torch.tensor([int(item["index"]) for item in items], dtype=torch.long)
    return {"wav": wav, "lengths": lengths, "indices": indices}
