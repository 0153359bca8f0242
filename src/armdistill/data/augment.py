"""Seeded waveform augmentation: noise at a given SNR, speed, gain, band-limiting, reverberation.

Each effect is a plain function of a 1-D float32 waveform ``[samples]``; :class:`Augmenter`
draws a chain of them per utterance from an :class:`AugmentConfig` and a numpy ``Generator``,
so the same seed always gives the same audio. Only speed changes the length (by exactly
``round(samples / factor)``); callers that keep frame labels stretch them with
:func:`stretch_index`. Noise and reverberation are synthetic (white or pink noise; room impulse
responses of exponentially decaying noise), so nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy.signal import butter, fftconvolve, resample_poly, sosfiltfilt

from armdistill.checks import check_choice, check_range
from armdistill.config import ConfigError
from armdistill.errors import expected
from armdistill.frames import SAMPLE_RATE

# ln(10^3): an envelope exp(-_DECAY * t / rt60) falls by 60 dB at t = rt60.
_DECAY = 3.0 * np.log(10.0)


def _power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64)))


def noise(num_samples: int, rng: np.random.Generator, colour: str = "white") -> np.ndarray:
    """Unit-power Gaussian noise ``[num_samples]``: ``white`` (flat) or ``pink`` (1/f power)."""
    check_choice("colour", colour, ("white", "pink"))
    white = rng.standard_normal(num_samples)
    if colour == "pink":
        spectrum = np.fft.rfft(white)
        spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1.0))
        white = np.fft.irfft(spectrum, n=num_samples)
    return (white / np.sqrt(max(_power(white), 1e-20))).astype(np.float32)


def add_noise(wav: np.ndarray, snr_db: float, rng: np.random.Generator, colour: str = "white") -> np.ndarray:
    """``wav`` plus noise scaled so that 10 log10(P_wav / P_noise) is exactly ``snr_db``."""
    scale = np.sqrt(_power(wav) / 10.0 ** (snr_db / 10.0))
    return (wav + scale * noise(len(wav), rng, colour)).astype(np.float32)


def change_speed(wav: np.ndarray, factor: float) -> np.ndarray:
    """Play ``factor`` times faster (pitch moves with it, as Kaldi's speed perturbation).

    Polyphase resampling by ``1 / factor`` (a ratio with denominator at most 1000); the output
    has exactly ``round(len(wav) / factor)`` samples.
    """
    check_range("speed factor", factor, gt=0)
    target = int(round(len(wav) / factor))
    ratio = Fraction(1.0 / factor).limit_denominator(1000)
    out = resample_poly(wav, ratio.numerator, ratio.denominator)[:target]
    return np.pad(out, (0, target - len(out))).astype(np.float32)


def stretch_index(num_out: int, factor: float, num_in: int) -> np.ndarray:
    """For each of ``num_out`` frames after a speed change by ``factor``, the source frame index."""
    return np.minimum(((np.arange(num_out) + 0.5) * factor).astype(np.int64), num_in - 1)


def apply_gain(wav: np.ndarray, gain_db: float) -> np.ndarray:
    return (wav * np.float32(10.0 ** (gain_db / 20.0))).astype(np.float32)


def band_limit(wav: np.ndarray, sample_rate: int, low_hz: float | None, high_hz: float | None) -> np.ndarray:
    """Zero-phase 8th-order Butterworth band-pass (or high-/low-pass when one edge is None)."""
    nyquist = sample_rate / 2.0
    check_range("band_limit: high_hz", high_hz, gt=0, lt=nyquist, null=True)
    if high_hz is not None:
        check_range("band_limit: low_hz", low_hz, lt=high_hz, null=True)
    if low_hz is None and high_hz is None:
        return wav
    if low_hz is None:
        sos = butter(8, high_hz, btype="lowpass", fs=sample_rate, output="sos")
    elif high_hz is None:
        sos = butter(8, low_hz, btype="highpass", fs=sample_rate, output="sos")
    else:
        sos = butter(8, (low_hz, high_hz), btype="bandpass", fs=sample_rate, output="sos")
    return sosfiltfilt(sos, wav).astype(np.float32)


def synthetic_rir(rt60: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Room impulse response ``[round(rt60 * sample_rate)]``: a unit direct path, then noise under
    an envelope that decays by 60 dB over ``rt60`` seconds."""
    check_range("rt60", rt60, gt=0)
    length = max(2, int(round(rt60 * sample_rate)))
    t = np.arange(length) / sample_rate
    rir = rng.standard_normal(length) * np.exp(-_DECAY * t / rt60) * 0.3
    rir[0] = 1.0
    return rir.astype(np.float32)


def reverberate(wav: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """``wav`` convolved with ``rir``, cut to ``wav``'s length (labels keep their times) and
    rescaled to ``wav``'s power."""
    out = fftconvolve(wav, rir)[: len(wav)]
    return (out * np.sqrt(_power(wav) / max(_power(out), 1e-20))).astype(np.float32)


Range = tuple[float, float]


@dataclass
class AugmentConfig:
    """Per-utterance augmentation: each effect applies with its probability, its parameter drawn
    uniformly from its range. ``prob`` is the chance that an utterance is augmented at all."""

    prob: float = 0.0
    speed_prob: float = 0.5
    speed: Range = (0.85, 1.15)
    reverb_prob: float = 0.3
    rt60: Range = (0.2, 0.8)
    band_prob: float = 0.3
    # band-limited (telephone-like to wide-band): high cut-off, and a low cut-off up to low_hz[1]
    high_hz: Range = (2500.0, 7000.0)
    low_hz: Range = (50.0, 400.0)
    noise_prob: float = 0.6
    snr_db: Range = (0.0, 25.0)
    pink_prob: float = 0.5
    gain_prob: float = 0.5
    gain_db: Range = (-12.0, 6.0)

    def __post_init__(self) -> None:
        for name in ("prob", "speed_prob", "reverb_prob", "band_prob", "noise_prob", "pink_prob", "gain_prob"):
            check_range(name, getattr(self, name), ge=0, le=1)
        for name in ("speed", "rt60", "high_hz", "low_hz", "snr_db", "gain_db"):
            low, high = getattr(self, name)
            if low > high:
                raise ConfigError(f"{name}: expected [low, high] with low <= high, got {[low, high]}")
        for name in ("speed", "rt60", "high_hz", "low_hz"):
            check_range(f"{name}[0]", getattr(self, name)[0], gt=0)
        if self.low_hz[1] >= self.high_hz[0]:
            raise ConfigError(expected("low_hz[1]", f"a cut-off below high_hz[0]={self.high_hz[0]:g}", self.low_hz[1]))


# `armdistill synth --augment`: every utterance augmented, the other settings as above.
SYNTH_AUGMENT = AugmentConfig(prob=1.0)


class Augmenter:
    """Draws and applies one chain per call: speed, reverberation, band-limit, noise, gain."""

    def __init__(self, config: AugmentConfig, sample_rate: int = SAMPLE_RATE):
        if config.high_hz[1] >= sample_rate / 2:
            what = f"a cut-off below the Nyquist frequency {sample_rate / 2:g} Hz"
            raise ConfigError(expected("high_hz[1]", what, config.high_hz[1]))
        self.config = config
        self.sample_rate = sample_rate

    def draw_speed(self, rng: np.random.Generator) -> float:
        """The speed factor of the next chain (1.0 for none); draw it first, then call :meth:`__call__`."""
        cfg = self.config
        return float(rng.uniform(*cfg.speed)) if rng.random() < cfg.speed_prob else 1.0

    def __call__(self, wav: np.ndarray, rng: np.random.Generator, speed: float = 1.0) -> np.ndarray:
        """Augmented ``wav``; its length is ``round(len(wav) / speed)``."""
        cfg = self.config
        out = change_speed(wav, speed) if speed != 1.0 else wav.astype(np.float32)
        if rng.random() < cfg.reverb_prob:
            out = reverberate(out, synthetic_rir(float(rng.uniform(*cfg.rt60)), self.sample_rate, rng))
        if rng.random() < cfg.band_prob:
            out = band_limit(out, self.sample_rate, float(rng.uniform(*cfg.low_hz)), float(rng.uniform(*cfg.high_hz)))
        if rng.random() < cfg.noise_prob:
            colour = "pink" if rng.random() < cfg.pink_prob else "white"
            out = add_noise(out, float(rng.uniform(*cfg.snr_db)), rng, colour)
        if rng.random() < cfg.gain_prob:
            out = apply_gain(out, float(rng.uniform(*cfg.gain_db)))
        return out

    def draw(self, rng: np.random.Generator) -> float | None:
        """None (with probability ``1 - prob``: leave the utterance as it is) or its speed factor;
        a caller that crops draws this first, to cut ``speed`` times the crop from the source.
        With ``prob`` 0 nothing is drawn, so a seeded caller's other draws are as without augmentation."""
        if self.config.prob == 0.0 or rng.random() >= self.config.prob:
            return None
        return self.draw_speed(rng)

    def augment(self, wav: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float]:
        """With probability ``prob`` an augmented ``wav`` and its speed factor, else ``(wav, 1.0)``."""
        speed = self.draw(rng)
        return (wav, 1.0) if speed is None else (self(wav, rng, speed), speed)
