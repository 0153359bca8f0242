"""Audio reading: mono float32 at the model's sample rate, read with soundfile."""

from __future__ import annotations

from math import gcd
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from armdistill.errors import DataError, MissingFileError


def resampled_length(num_samples: int, orig_rate: int, target_rate: int) -> int:
    """Samples that ``resample_poly`` returns when taking ``num_samples`` from ``orig_rate`` to ``target_rate``."""
    g = gcd(orig_rate, target_rate)
    up, down = target_rate // g, orig_rate // g
    return -(-num_samples * up // down)


class AudioInfo(NamedTuple):
    frames: int
    sample_rate: int
    channels: int


def audio_info(path: str | Path) -> AudioInfo:
    """Header of ``path`` without decoding; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: audio file not found")
    try:
        info = sf.info(str(path))
    except sf.SoundFileError as err:
        raise DataError(f"{path}: cannot read audio header ({err})") from err
    return AudioInfo(frames=int(info.frames), sample_rate=int(info.samplerate), channels=int(info.channels))


def target_num_samples(path: str | Path, sample_rate: int = 16000, resample: bool = True) -> int:
    """Length of ``path`` in samples at ``sample_rate``, from its header only.

    Raises :class:`DataError` naming the file when it is not mono, or has another rate and
    ``resample`` is off; the same checks ``load_audio`` makes.
    """
    info = audio_info(path)
    _check_format(Path(path), info.channels, info.sample_rate, sample_rate, resample)
    return resampled_length(info.frames, info.sample_rate, sample_rate)


def load_audio(
    path: str | Path,
    sample_rate: int = 16000,
    resample: bool = True,
    start: int = 0,
    stop: int | None = None,
) -> np.ndarray:
    """Read ``path`` as mono float32 ``[samples]`` at ``sample_rate``.

    ``start``/``stop`` select a span in samples at ``sample_rate``; when the file already has
    that rate only the span is decoded, which keeps random crops of long files cheap.
    Multi-channel audio is an error (mixing channels down silently would hide a data bug);
    another sample rate is resampled with a polyphase filter, or an error if ``resample`` is off.
    """
    path = Path(path)
    info = audio_info(path)
    _check_format(path, info.channels, info.sample_rate, sample_rate, resample)
    try:
        if info.sample_rate == sample_rate:
            wav, _ = sf.read(str(path), dtype="float32", start=start, stop=stop)
        else:
            wav, _ = sf.read(str(path), dtype="float32")
    except sf.SoundFileError as err:
        raise DataError(f"{path}: cannot decode audio ({err})") from err
    bad = int(np.count_nonzero(~np.isfinite(wav)))
    if bad:
        raise DataError(f"{path}: {bad} non-finite samples (NaN or inf); expected finite audio")
    if info.sample_rate == sample_rate:
        return wav
    g = gcd(info.sample_rate, sample_rate)
    wav = resample_poly(wav, sample_rate // g, info.sample_rate // g).astype(np.float32)
    return wav[start:stop]


def _check_format(path: Path, channels: int, rate: int, sample_rate: int, resample: bool) -> None:
    if channels != 1:
        raise DataError(f"{path}: {channels} channels; expected mono audio")
    if rate != sample_rate and not resample:
        raise DataError(f"{path}: sample rate {rate} Hz; expected {sample_rate} Hz (resampling is off)")
