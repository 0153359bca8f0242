"""Waveform augmentation: seeded, and each effect changes the audio exactly as stated."""

import numpy as np
import pytest

from armdistill.config import ConfigError, from_dict
from armdistill.data.augment import (
    AugmentConfig,
    Augmenter,
    add_noise,
    apply_gain,
    band_limit,
    change_speed,
    reverberate,
    stretch_index,
    synthetic_rir,
)

SR = 16000


def _speechlike(seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    """Harmonics of 150 Hz up to 7 kHz under a syllable-rate envelope."""
    t = np.arange(int(seconds * SR)) / SR
    rng = np.random.default_rng(seed)
    wav = sum(np.sin(2 * np.pi * 150 * k * t + rng.uniform(0, 6.3)) / k for k in range(1, 47))
    return (0.3 * wav * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))).astype(np.float32)


def _snr(clean: np.ndarray, noisy: np.ndarray) -> float:
    return 10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean((noisy - clean).astype(np.float64) ** 2))


def test_same_seed_same_audio_other_seed_other_audio():
    wav = _speechlike()
    aug = Augmenter(AugmentConfig(prob=1.0, speed_prob=1.0, reverb_prob=1.0, band_prob=1.0, noise_prob=1.0,
                                  gain_prob=1.0))
    a, speed_a = aug.augment(wav, np.random.default_rng(7))
    b, speed_b = aug.augment(wav, np.random.default_rng(7))
    c, _ = aug.augment(wav, np.random.default_rng(8))
    assert speed_a == speed_b and np.array_equal(a, b)
    assert len(a) == round(len(wav) / speed_a)
    assert len(c) != len(a) or not np.allclose(a, c)


def test_prob_zero_leaves_audio_untouched():
    wav = _speechlike()
    out, speed = Augmenter(AugmentConfig(prob=0.0)).augment(wav, np.random.default_rng(0))
    assert speed == 1.0 and out is wav


@pytest.mark.parametrize("snr_db", [0.0, 5.0, 20.0])
@pytest.mark.parametrize("colour", ["white", "pink"])
def test_noise_hits_the_target_snr(snr_db, colour):
    wav = _speechlike()
    assert abs(_snr(wav, add_noise(wav, snr_db, np.random.default_rng(1), colour)) - snr_db) < 0.5


def test_pink_noise_has_more_low_than_high_energy():
    from armdistill.data.augment import noise

    spectrum = np.abs(np.fft.rfft(noise(SR, np.random.default_rng(0), "pink"))) ** 2
    freqs = np.fft.rfftfreq(SR, 1 / SR)
    assert spectrum[(freqs > 100) & (freqs < 500)].mean() > 10 * spectrum[(freqs > 4000) & (freqs < 8000)].mean()


@pytest.mark.parametrize("factor", [0.85, 0.9, 1.1, 1.15, 1.0371])
def test_speed_factor_exact_on_length_and_moves_pitch(factor):
    t = np.arange(SR) / SR
    wav = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    out = change_speed(wav, factor)
    assert len(out) == round(SR / factor)
    spectrum = np.abs(np.fft.rfft(out[100:-100] * np.hanning(len(out) - 200)))
    peak_hz = np.argmax(spectrum) * SR / (len(out) - 200)
    assert abs(peak_hz - 440 * factor) < 3.0


def test_stretch_index_maps_frames_back_to_the_source():
    idx = stretch_index(9, 1.1, 10)
    assert idx.tolist() == [0, 1, 2, 3, 4, 6, 7, 8, 9]
    assert stretch_index(12, 0.9, 11).max() == 10


def test_gain_is_exact():
    wav = _speechlike()
    assert np.allclose(apply_gain(wav, -6.0), wav * 10 ** (-6 / 20), rtol=1e-6)
    assert np.allclose(apply_gain(wav, 0.0), wav)


def test_band_limit_removes_energy_above_the_cutoff():
    wav = _speechlike()
    out = band_limit(wav, SR, 300.0, 3400.0)
    freqs = np.fft.rfftfreq(len(wav), 1 / SR)
    before, after = np.abs(np.fft.rfft(wav)) ** 2, np.abs(np.fft.rfft(out)) ** 2
    above = freqs > 4000
    # at least 30 dB down (what is left is the clip edges' transient, ~40 dB down)
    assert after[above].sum() < 1e-3 * before[above].sum()
    passband = (freqs > 600) & (freqs < 3000)
    assert after[passband].sum() > 0.9 * before[passband].sum()
    assert len(out) == len(wav)


def test_rir_length_and_sixty_db_decay():
    rt60 = 0.5
    rir = synthetic_rir(rt60, SR, np.random.default_rng(0))
    assert len(rir) == round(rt60 * SR) and rir[0] == 1.0
    # energy per 10 ms window falls on a straight line in dB, 60 dB per rt60
    windows = (rir[1:] ** 2)[: len(rir) - 1 - (len(rir) - 1) % 160].reshape(-1, 160).mean(axis=1)
    t = (np.arange(len(windows)) + 0.5) * 0.01
    slope = np.polyfit(t, 10 * np.log10(windows), 1)[0]
    assert abs(slope - (-60 / rt60)) < 0.1 * 60 / rt60


def test_reverberation_keeps_length_and_power():
    wav = _speechlike()
    out = reverberate(wav, synthetic_rir(0.6, SR, np.random.default_rng(0)))
    assert len(out) == len(wav)
    assert np.isclose(np.mean(out.astype(np.float64) ** 2), np.mean(wav.astype(np.float64) ** 2), rtol=1e-4)
    assert not np.allclose(out, wav, atol=1e-3)


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="snr_db: expected \\[low, high\\]"):
        from_dict(AugmentConfig, {"snr_db": [20, 5]})
    with pytest.raises(ConfigError, match=r"noise_prob: expected a value in \[0, 1\], got 1\.5"):
        from_dict(AugmentConfig, {"noise_prob": 1.5})
    with pytest.raises(ConfigError, match=r"high_hz\[1\]: expected a cut-off below the Nyquist frequency 8000 Hz, got 9000\.0"):
        Augmenter(AugmentConfig(high_hz=(3000.0, 9000.0)))
