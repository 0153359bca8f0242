"""MFCC and log-mel filterbank baselines, in plain torch.

torchaudio does not import against the CPU torch build this project pins, so the few pieces a
baseline needs (framing, power spectrum, mel filters, DCT, deltas) are written here.

Frames use a 25 ms window (400 samples) and a 20 ms hop (320 samples) with no centring, so an
utterance of ``S`` samples gives ``floor((S - 400) / 320) + 1`` frames: exactly the frame count
of the 320-stride wav2vec 2.0 CNN (its receptive field is 400 samples), and frame ``t`` covers
the same samples as the models' frame ``t``.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

from armdistill.checks import check_shape
from armdistill.errors import expected
from armdistill.frames import SAMPLE_RATE

WINDOW = 400
HOP = 320
N_FFT = 512
PREEMPHASIS = 0.97
BASELINES: tuple[str, ...] = ("mfcc", "mfcc-context", "fbank")


def num_frames(num_samples: int) -> int:
    """Frames for ``num_samples`` samples (0 when shorter than one window)."""
    return max(0, (num_samples - WINDOW) // HOP + 1)


def frame_signal(wav: Tensor) -> Tensor:
    """``[samples]`` -> ``[frames, WINDOW]`` (no padding; a short tail is dropped)."""
    check_shape("wav", wav, ("samples",))
    if wav.numel() < WINDOW:
        return wav.new_zeros(0, WINDOW)
    return wav.unfold(0, WINDOW, HOP)


def power_spectrum(wav: Tensor) -> Tensor:
    """``[samples]`` -> ``[frames, N_FFT // 2 + 1]``: per-frame DC removal, pre-emphasis,
    Hamming window, then ``|rfft|^2``."""
    frames = frame_signal(wav.float())
    if frames.shape[0] == 0:
        return frames.new_zeros(0, N_FFT // 2 + 1)
    frames = frames - frames.mean(dim=1, keepdim=True)
    # Pre-emphasis inside each frame; the first sample is emphasised against itself, as Kaldi does.
    previous = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
    frames = frames - PREEMPHASIS * previous
    frames = frames * torch.hamming_window(WINDOW, periodic=False, dtype=frames.dtype)
    return torch.fft.rfft(frames, n=N_FFT).abs().pow(2)


def _hz_to_mel(hz: Tensor) -> Tensor:
    return 2595.0 * torch.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel: Tensor) -> Tensor:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


@lru_cache(maxsize=8)
def mel_filterbank(n_mels: int, f_min: float = 20.0, f_max: float = SAMPLE_RATE / 2) -> Tensor:
    """Triangular filters on the HTK mel scale: ``[N_FFT // 2 + 1, n_mels]``."""
    freqs = torch.linspace(0.0, SAMPLE_RATE / 2, N_FFT // 2 + 1, dtype=torch.float64)
    mel_lo, mel_hi = _hz_to_mel(torch.tensor(f_min)), _hz_to_mel(torch.tensor(f_max))
    edges = _mel_to_hz(torch.linspace(mel_lo.item(), mel_hi.item(), n_mels + 2, dtype=torch.float64))
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (freqs[:, None] - lower[None, :]) / (centre - lower)[None, :]
    falling = (upper[None, :] - freqs[:, None]) / (upper - centre)[None, :]
    return torch.clamp(torch.minimum(rising, falling), min=0.0).float()


@lru_cache(maxsize=8)
def dct_matrix(n_in: int, n_out: int) -> Tensor:
    """Orthonormal DCT-II as a ``[n_in, n_out]`` matrix (``x @ dct`` = scipy ``dct(x, norm='ortho')[:n_out]``)."""
    n = torch.arange(n_in, dtype=torch.float64)
    k = torch.arange(n_out, dtype=torch.float64)
    basis = torch.cos(math.pi / n_in * (n[:, None] + 0.5) * k[None, :]) * math.sqrt(2.0 / n_in)
    basis[:, 0] = 1.0 / math.sqrt(n_in)
    return basis.float()


def log_mel(wav: Tensor, n_mels: int = 80) -> Tensor:
    """``[samples]`` -> log mel energies ``[frames, n_mels]``."""
    mel = power_spectrum(wav) @ mel_filterbank(n_mels)
    return torch.log(mel.clamp(min=1e-10))


def mfcc(wav: Tensor, n_ceps: int = 13, n_mels: int = 40) -> Tensor:
    """``[samples]`` -> cepstra ``[frames, n_ceps]`` (c0 included)."""
    return log_mel(wav, n_mels) @ dct_matrix(n_mels, n_ceps)


def deltas(x: Tensor, width: int = 2) -> Tensor:
    """Regression deltas over ``+-width`` frames, edges replicated: ``[frames, dim]`` -> same."""
    if x.shape[0] == 0:
        return x.clone()
    padded = F.pad(x.T[None], (width, width), mode="replicate")[0].T
    frames = x.shape[0]
    num = sum(
        n * (padded[width + n : width + n + frames] - padded[width - n : width - n + frames])
        for n in range(1, width + 1)
    )
    return num / (2 * sum(n * n for n in range(1, width + 1)))


def cmvn(x: Tensor, eps: float = 1e-5) -> Tensor:
    """Per-utterance mean and variance normalisation over frames: ``[frames, dim]``."""
    if x.shape[0] == 0:
        return x.clone()
    return (x - x.mean(dim=0)) / (x.var(dim=0, unbiased=False) + eps).sqrt()


def stack_context(x: Tensor, context: int = 2) -> Tensor:
    """``[frames, dim]`` -> ``[frames, dim * (2 * context + 1)]``, frames ``t-context..t+context``
    side by side (edges replicated), oldest first."""
    if x.shape[0] == 0:
        return x.new_zeros(0, x.shape[1] * (2 * context + 1))
    padded = F.pad(x.T[None], (context, context), mode="replicate")[0].T
    frames = x.shape[0]
    return torch.cat([padded[i : i + frames] for i in range(2 * context + 1)], dim=1)


def baseline_features(name: str, wav: Tensor) -> Tensor:
    """A named baseline for one utterance: ``[samples]`` -> ``[frames, dim]``.

    mfcc: 13 cepstra + deltas + delta-deltas (39), CMVN; mfcc-context: that with +-2 frames
    stacked (195); fbank: 80 log-mel energies, CMVN.
    """
    if name == "fbank":
        return cmvn(log_mel(wav, 80))
    if name in ("mfcc", "mfcc-context"):
        ceps = mfcc(wav)
        d1 = deltas(ceps)
        feats = cmvn(torch.cat([ceps, d1, deltas(d1)], dim=1))
        return stack_context(feats, 2) if name == "mfcc-context" else feats
    raise ValueError(expected("baseline", f"one of {list(BASELINES)}", name))
