"""Which layers of a model have similar attention maps, and the reuse pattern that follows.

Maps come from real utterances with padding excluded (padded keys get zero weight, padded query
rows are dropped), so an utterance's contribution does not depend on its batch. The similarity
of two maps ``P, Q`` (rows are distributions over key frames) is the mean over query frames of
``1 - JSD(P[t], Q[t])``, Jensen-Shannon divergence in bits (so 1 = identical rows, 0 = disjoint
support). ``head_similarity[i][j][h][g]`` compares head ``h`` of layer ``i`` with head ``g`` of
layer ``j``; the layer similarity ``similarity[i][j]`` is the mean over heads of the best
one-to-one matching of heads (Hungarian), because a reusing layer's value and output
projections may give any reused head's map to any of its own heads.

A reuse pattern (``reuse_pattern``: True = the layer computes its map) makes every reusing
layer take the most recent computing layer's map; its total is the sum over reusing layers of
their similarity to that layer. :func:`best_pattern` finds the pattern with K computing layers
of highest total exactly, by dynamic programming.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from armdistill.config import ConfigError

MEASURE = ("mean over query frames of 1 - Jensen-Shannon divergence (bits) between attention rows; layers: "
           "mean over heads of the best one-to-one head matching")


@torch.no_grad()
def attention_maps(model: nn.Module, wav: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, ...]:
    """Each layer's applied attention map ``[batch, heads, frames, frames]`` of a Student or a
    Teacher, for wav ``[batch, samples]``; a student's reusing layer shows the map it reuses."""
    if hasattr(model, "attention_maps"):
        return model.attention_maps(wav, lengths)
    model.eval()
    return model(wav, lengths, output_attentions=True).attentions


def _entropy_bits(p: Tensor) -> Tensor:
    """Entropy in bits of the distributions in the last axis."""
    return -torch.special.xlogy(p, p).sum(-1) / math.log(2)


def row_similarity_sums(p: Tensor, q: Tensor) -> Tensor:
    """p ``[H, T, S]``, q ``[G, T, S]`` -> ``[H, G]``: sum over the T rows of ``1 - JSD`` (bits).

    ``JSD(p, q) = H((p + q) / 2) - (H(p) + H(q)) / 2``.
    """
    p, q = p.double(), q.double()
    hp, hq = _entropy_bits(p), _entropy_bits(q)  # [H, T], [G, T]
    out = torch.empty(p.shape[0], q.shape[0], dtype=torch.float64)
    for h in range(p.shape[0]):
        jsd = _entropy_bits((p[h][None] + q) / 2) - (hp[h][None] + hq) / 2  # [G, T]
        out[h] = (1.0 - jsd.clamp(min=0.0)).sum(-1)
    return out


def head_similarity(utterances: Iterable[Sequence[Tensor]]) -> Tensor:
    """Mean over every query frame of every utterance of ``1 - JSD`` per head pair.

    utterances: per utterance, one map ``[heads, frames, frames]`` per layer (valid frames only)
    -> ``[layers, layers, heads, heads]``.
    """
    total: Tensor | None = None
    rows = 0
    for maps in utterances:
        n = len(maps)
        if total is None:
            total = torch.zeros(n, n, maps[0].shape[0], maps[0].shape[0], dtype=torch.float64)
        for i in range(n):
            for j in range(i, n):
                total[i, j] += row_similarity_sums(maps[i], maps[j])
                if j != i:
                    total[j, i] = total[i, j].T
        rows += maps[0].shape[1]
    if total is None:
        raise ConfigError("attention analysis: no utterances")
    return total / rows


def matched_similarity(heads: Tensor) -> Tensor:
    """``[layers, layers, heads, heads]`` -> ``[layers, layers]``: mean similarity of the best one-to-one
    matching of the two layers' heads."""
    n = heads.shape[0]
    out = torch.empty(n, n, dtype=torch.float64)
    for i in range(n):
        for j in range(n):
            rows, cols = linear_sum_assignment(heads[i, j].numpy(), maximize=True)
            out[i, j] = float(heads[i, j][rows, cols].mean())
    return out


def pattern_total(similarity: Tensor, pattern: Sequence[bool]) -> float:
    """Sum over reusing layers of their similarity to the most recent computing layer."""
    if not pattern or not pattern[0]:
        raise ConfigError(f"reuse pattern {list(pattern)}: the first layer must compute its map")
    total, source = 0.0, 0
    for j, computes in enumerate(pattern):
        if computes:
            source = j
        else:
            total += float(similarity[source, j])
    return total


def best_pattern(similarity: Tensor, computing: int) -> list[bool]:
    """The reuse pattern with exactly ``computing`` computing layers (the first among them) of
    highest :func:`pattern_total`, by an exact dynamic programme over the layers.

    ``best[k][i]``: the highest total of layers ``i..n-1`` when layer ``i`` computes and ``k``
    more computing layers follow it; the run ``i+1 .. m-1`` reuses layer ``i``'s map.
    """
    n = similarity.shape[0]
    if not 1 <= computing <= n:
        raise ConfigError(f"computing layers: expected 1..{n}, got {computing}")
    run = [[0.0] * (n + 1) for _ in range(n)]  # run[i][m]: sum of similarity[i, i+1 .. m-1]
    for i in range(n):
        for m in range(i + 2, n + 1):
            run[i][m] = run[i][m - 1] + float(similarity[i, m - 1])
    best = [[-math.inf] * n for _ in range(computing)]
    nxt = [[n] * n for _ in range(computing)]
    for i in range(n):
        best[0][i] = run[i][n]
    for k in range(1, computing):
        for i in range(n - k - 1, -1, -1):
            for m in range(i + 1, n - k + 1):
                value = run[i][m] + best[k - 1][m]
                if value > best[k][i]:
                    best[k][i], nxt[k][i] = value, m
    pattern, i = [False] * n, 0
    for k in range(computing - 1, -1, -1):
        pattern[i] = True
        i = nxt[k][i]
    return pattern


def alternation_pattern(layers: int, computing: int) -> list[bool]:
    """The paper's alternation generalised: ``computing`` evenly spaced computing layers, the first
    one first (``[True, False] * (layers // 2)`` when ``computing`` is half the layers)."""
    starts = {math.floor(k * layers / computing + 0.5) for k in range(computing)}
    return [i in starts for i in range(layers)]


def valid_maps(model: nn.Module, wavs: Sequence[Tensor], layers: Sequence[int] | None = None,
               device: str | torch.device = "cpu") -> list[list[Tensor]]:
    """Per utterance of ``wavs`` (each ``[samples]``, run as one padded batch), the maps
    ``[heads, frames, frames]`` of ``layers`` (0-based, in order; None: all) over its valid frames."""
    lengths = torch.tensor([w.shape[0] for w in wavs])
    padded = torch.nn.utils.rnn.pad_sequence([w.float() for w in wavs], batch_first=True).to(device)
    maps = attention_maps(model, padded, lengths.to(device) if len(wavs) > 1 else None)
    chosen = range(len(maps)) if layers is None else _check_layers(layers, len(maps))
    frames = model.frame_lengths(lengths).tolist()
    return [[maps[i][b, :, :t, :t].cpu() for i in chosen] for b, t in enumerate(frames)]


def analyze(model: nn.Module, wavs: Sequence[Tensor], layers: Sequence[int] | None = None,
            computing: int | None = None, batch: int = 1, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Attention similarity of ``model`` over ``wavs`` (each ``[samples]``, ``batch`` at a time),
    restricted to ``layers`` (0-based, in order; None: all), and the best pattern with
    ``computing`` computing layers (None: half of them, rounded up, as the paper's alternation)."""
    chunks = (wavs[s:s + batch] for s in range(0, len(wavs), batch))
    heads = head_similarity(maps for chunk in chunks for maps in valid_maps(model, chunk, layers, device))
    similarity = matched_similarity(heads)
    n = similarity.shape[0]
    computing = math.ceil(n / 2) if computing is None else computing
    suggested, alternation = best_pattern(similarity, computing), alternation_pattern(n, computing)
    return {
        "measure": MEASURE,
        "layers": list(range(n)) if layers is None else list(layers),
        "utterances": len(wavs),
        "computing": computing,
        "similarity": similarity.tolist(),
        "head_similarity": heads.tolist(),
        "same_head_similarity": torch.diagonal(heads, dim1=2, dim2=3).mean(-1).tolist(),
        "suggested_pattern": suggested,
        "suggested_total": pattern_total(similarity, suggested),
        "alternation_pattern": alternation,
        "alternation_total": pattern_total(similarity, alternation),
    }


def _check_layers(layers: Sequence[int], available: int) -> list[int]:
    bad = [i for i in layers if not 0 <= i < available]
    if bad or len(set(layers)) != len(layers) or list(layers) != sorted(layers):
        raise ConfigError(f"--layers: expected distinct increasing layer indices in 0..{available - 1}, got {list(layers)}")
    return list(layers)


def spell_pattern(pattern: Sequence[bool]) -> str:
    """``[True, False, True]`` -> ``"C R C"`` (C computes its map, R reuses)."""
    return " ".join("C" if c else "R" for c in pattern)


def plot_similarity(result: dict[str, Any], path: Path, title: str) -> Path:
    """Heat map of the layer similarity off the diagonal (which is 1), values in the cells, both
    patterns and their totals in the caption."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    sim = torch.tensor(result["similarity"])
    n = sim.shape[0]
    off = ~torch.eye(n, dtype=torch.bool)
    shown = sim.masked_fill(~off, float("nan"))
    low, high = (float(sim[off].min()), float(sim[off].max())) if n > 1 else (0.0, 1.0)
    fig = Figure(figsize=(2.6 + 0.65 * n, 2.0 + 0.6 * n), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(shown.numpy(), cmap="viridis", vmin=low, vmax=high)
    for i in range(n):
        for j in range(n):
            if i != j:
                ax.text(j, i, f"{sim[i, j]:.3f}", ha="center", va="center", fontsize=7,
                        color="black" if sim[i, j] > (low + high) / 2 else "white")
    labels = [str(i) for i in result["layers"]]
    ax.set_xticks(range(n), labels, fontsize=8)
    ax.set_yticks(range(n), labels, fontsize=8)
    ax.set_xlabel("layer (0-based)", fontsize=8)
    ax.set_ylabel("layer (0-based)", fontsize=8)
    fig.colorbar(image, ax=ax, shrink=0.8, label="1 - JSD, heads matched")
    caption = (f"{title}\nsuggested {spell_pattern(result['suggested_pattern'])} ({result['suggested_total']:.3f}), "
               f"alternation {spell_pattern(result['alternation_pattern'])} ({result['alternation_total']:.3f})")
    ax.set_title(caption, fontsize=8)
    fig.savefig(path, dpi=110)
    return path
