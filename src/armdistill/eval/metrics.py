"""Probe metrics: edit-distance error rates (PER, WER, CER), accuracy, greedy CTC decoding."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch
from torch import Tensor

from armdistill.frames import valid_mask


def edit_distance(ref: Sequence[Hashable], hyp: Sequence[Hashable]) -> int:
    """Levenshtein distance (substitutions, insertions, deletions all cost 1)."""
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        current = [i]
        for j, h in enumerate(hyp, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1]


def error_rate(refs: Sequence[Sequence[Hashable]], hyps: Sequence[Sequence[Hashable]]) -> float:
    """Total edits over total reference tokens (corpus-level, as PER / WER / CER are reported)."""
    if len(refs) != len(hyps):
        raise ValueError(f"error_rate: {len(refs)} references but {len(hyps)} hypotheses")
    total = sum(len(r) for r in refs)
    if total == 0:
        raise ValueError("error_rate: the references hold no tokens")
    return sum(edit_distance(r, h) for r, h in zip(refs, hyps)) / total


def accuracy(refs: Sequence[Hashable], hyps: Sequence[Hashable]) -> float:
    if len(refs) != len(hyps) or not refs:
        raise ValueError(f"accuracy: need equal, non-zero counts, got {len(refs)} and {len(hyps)}")
    return sum(r == h for r, h in zip(refs, hyps)) / len(refs)


def ctc_greedy_decode(logits: Tensor, lengths: Tensor, blank: int = 0) -> list[list[int]]:
    """Best path per utterance with repeats merged and blanks dropped.

    logits: ``[batch, frames, classes]``; lengths: ``[batch]`` valid frames.
    """
    best = logits.argmax(dim=-1)  # [batch, frames]
    keep = torch.ones_like(best, dtype=torch.bool)
    keep[:, 1:] = best[:, 1:] != best[:, :-1]
    keep &= best != blank
    keep &= valid_mask(lengths, best.shape[1])
    return [row[k].tolist() for row, k in zip(best, keep)]


def words_to_chars(words: str) -> list[str]:
    """``"HI YO"`` -> ``["H", "I", "|", "Y", "O"]``: characters with ``|`` between words."""
    chars: list[str] = []
    for i, word in enumerate(words.split()):
        if i:
            chars.append("|")
        chars.extend(word)
    return chars


def chars_to_words(chars: Sequence[str]) -> list[str]:
    """Inverse of :func:`words_to_chars`; empty words (repeated separators) are dropped."""
    return [w for w in "".join(chars).split("|") if w]
