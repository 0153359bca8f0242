"""MFCC / fbank baselines: frame alignment with the 320-stride CNN and parity with numpy / scipy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
import torch

from armdistill.eval.features import (
    HOP,
    N_FFT,
    WINDOW,
    baseline_features,
    cmvn,
    dct_matrix,
    deltas,
    log_mel,
    mel_filterbank,
    num_frames,
    power_spectrum,
    stack_context,
)
from armdistill.frames import conv_output_lengths
from armdistill.models.config import preset_config
from armdistill.models.student import Student

LENGTHS = [0, 399, 400, 401, 719, 720, 721, 1039, 1040, 16000, 16319, 16320, 33333]


@pytest.mark.parametrize("preset", ["tiny-arm", "armhubert"])
def test_frame_counts_equal_cnn_lengths(preset: str) -> None:
    kernels_strides = [(k, s) for _, k, s in preset_config(preset).conv_layers]
    expected = conv_output_lengths(torch.tensor(LENGTHS), kernels_strides).tolist()
    for n, frames in zip(LENGTHS, expected):
        wav = torch.randn(n)
        assert num_frames(n) == frames
        for name, dim in (("mfcc", 39), ("mfcc-context", 195), ("fbank", 80)):
            assert tuple(baseline_features(name, wav).shape) == (frames, dim), (name, n)


def test_frame_count_equals_student_output_frames() -> None:
    torch.manual_seed(0)
    student = Student.from_preset("tiny-arm").eval()
    wav = torch.randn(1, 16321)
    with torch.no_grad():
        out = student(wav, torch.tensor([16321]))
    assert out.hidden_states[-1].shape[1] == baseline_features("mfcc", wav[0]).shape[0] == 50


def test_power_spectrum_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    wav = rng.standard_normal(5000).astype(np.float64)
    frames = np.stack([wav[i * HOP : i * HOP + WINDOW] for i in range(num_frames(wav.size))])
    frames = frames - frames.mean(axis=1, keepdims=True)
    frames = frames - 0.97 * np.concatenate([frames[:, :1], frames[:, :-1]], axis=1)
    expected = np.abs(np.fft.rfft(frames * np.hamming(WINDOW), n=N_FFT)) ** 2
    got = power_spectrum(torch.from_numpy(wav)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)


def test_dct_matches_scipy() -> None:
    x = np.random.default_rng(1).standard_normal((7, 40))
    expected = scipy.fft.dct(x, type=2, norm="ortho", axis=1)[:, :13]
    got = (torch.from_numpy(x).float() @ dct_matrix(40, 13)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_mel_filters_peak_at_their_centres_and_tones_land_in_the_right_bin() -> None:
    fb = mel_filterbank(40)
    assert fb.shape == (N_FFT // 2 + 1, 40)
    assert torch.all(fb.max(dim=0).values > 0.5)
    peaks = fb.argmax(dim=0)
    assert torch.all(peaks[1:] >= peaks[:-1])  # filters ordered by frequency
    t = torch.arange(8000) / 16000
    for hz in (250.0, 1000.0, 3500.0):
        energies = log_mel(torch.sin(2 * torch.pi * hz * t), 40).mean(dim=0)
        tone_bin = round(hz / (16000 / N_FFT))
        assert fb[tone_bin, energies.argmax()] == fb[tone_bin].max()


def test_deltas_of_a_ramp_are_its_slope() -> None:
    x = (torch.arange(20, dtype=torch.float32) * 0.5)[:, None].repeat(1, 3)
    d = deltas(x)
    torch.testing.assert_close(d[2:-2], torch.full((16, 3), 0.5))
    # Replicated edges: frame 0 sees (x1 - x0) + 2 (x2 - x0) over 10.
    torch.testing.assert_close(d[0], torch.full((3,), (0.5 + 2 * 1.0) / 10))


def test_stack_context_and_cmvn() -> None:
    x = torch.arange(12, dtype=torch.float32).view(6, 2)
    s = stack_context(x, 2)
    assert s.shape == (6, 10)
    torch.testing.assert_close(s[:, 4:6], x)  # centre block is the frame itself
    torch.testing.assert_close(s[0, 0:2], x[0])  # t-2 clamped to the first frame
    torch.testing.assert_close(s[3, 0:2], x[1])
    torch.testing.assert_close(s[5, 8:10], x[5])
    n = cmvn(torch.randn(50, 4) * 3 + 7)
    torch.testing.assert_close(n.mean(dim=0), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(n.var(dim=0, unbiased=False), torch.ones(4), atol=1e-3, rtol=0)


def test_mfcc_context_centre_is_mfcc() -> None:
    wav = torch.randn(8000)
    torch.testing.assert_close(baseline_features("mfcc-context", wav)[:, 78:117], baseline_features("mfcc", wav))


def test_unknown_baseline_is_named() -> None:
    with pytest.raises(ValueError, match="plp"):
        baseline_features("plp", torch.randn(1000))
