"""Audio reading: mono float32 at the model's sample rate, read with soundfile and checked.

Every way a file can be unusable raises :class:`AudioFileError` naming the file and the
problem; training, ``check-data`` and the probes all read through :func:`load_audio`, so they
agree on what counts as bad audio.
"""

from __future__ import annotations

from math import gcd
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from armdistill.errors import DataError
from armdistill.frames import SAMPLE_RATE


class AudioFileError(DataError):
    """``[WHERE: ]PATH: PROBLEM``; ``where`` is ``manifest:line`` when the file came from a manifest.

    Picklable with its fields, so it crosses process boundaries (check-data workers) intact.
    """

    def __init__(self, path: str | Path, problem: str, where: str | None = None):
        self.path, self.problem, self.where = str(path), problem, where
        super().__init__(f"{where}: {path}: {problem}" if where else f"{path}: {problem}")

    def __reduce__(self) -> tuple[type, tuple[str, str, str | None]]:
        return type(self), (self.path, self.problem, self.where)

    def at(self, where: str) -> "AudioFileError":
        """The same problem, located at ``where`` (``manifest:line``)."""
        return AudioFileError(self.path, self.problem, where)


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
        raise AudioFileError(path, "audio file not found")
    try:
        info = sf.info(str(path))
    except (sf.SoundFileError, RuntimeError) as err:
        raise AudioFileError(path, f"cannot read audio header ({err})") from err
    return AudioInfo(frames=int(info.frames), sample_rate=int(info.samplerate), channels=int(info.channels))


def target_num_samples(path: str | Path, sample_rate: int = SAMPLE_RATE, resample: bool = True) -> int:
    """Length of ``path`` in samples at ``sample_rate``, from its header only.

    Raises :class:`AudioFileError` when it is not mono, or has another rate and ``resample``
    is off; the same checks ``load_audio`` makes.
    """
    info = audio_info(path)
    _check_format(Path(path), info.channels, info.sample_rate, sample_rate, resample)
    return resampled_length(info.frames, info.sample_rate, sample_rate)


def load_audio(
    path: str | Path,
    sample_rate: int = SAMPLE_RATE,
    resample: bool = True,
    start: int = 0,
    stop: int | None = None,
    expected: int | None = None,
    min_samples: int = 1,
) -> np.ndarray:
    """Read ``path`` as mono float32 ``[samples]`` at ``sample_rate``, checked.

    ``start``/``stop`` select a span in samples at ``sample_rate``; when the file already has
    that rate only the span is decoded, which keeps random crops of long files cheap.
    Multi-channel audio is an error (mixing channels down silently would hide a data bug);
    another sample rate is resampled with a polyphase filter, or an error if ``resample`` is off.
    ``expected`` is the length a manifest lists: a header that disagrees (a truncated WAV, a
    stale manifest) is an error, as is a file shorter than ``min_samples`` (one model frame),
    a span that decodes short (a truncated FLAC) and any non-finite sample.
    """
    path = Path(path)
    info = audio_info(path)
    _check_format(path, info.channels, info.sample_rate, sample_rate, resample)
    length = resampled_length(info.frames, info.sample_rate, sample_rate)
    if expected is not None and length != expected:
        raise AudioFileError(
            path, f"the header gives {length} samples at {sample_rate} Hz where the manifest lists {expected}; "
            "rebuild the manifest or drop the file"
        )
    if length < min_samples:
        raise AudioFileError(path, f"{length} samples, shorter than one frame ({min_samples} samples)")
    try:
        if info.sample_rate == sample_rate:
            wav, _ = sf.read(str(path), dtype="float32", start=start, stop=stop)
        else:
            wav, _ = sf.read(str(path), dtype="float32")
    except (sf.SoundFileError, RuntimeError) as err:
        raise AudioFileError(path, f"cannot decode audio ({err})") from err
    if info.sample_rate != sample_rate:
        g = gcd(info.sample_rate, sample_rate)
        wav = resample_poly(wav, sample_rate // g, info.sample_rate // g).astype(np.float32)[start:stop]
    span = len(range(length)[start:stop])
    if len(wav) != span:
        raise AudioFileError(path, f"decodes to {len(wav)} samples where its header promises {span} (truncated?)")
    bad = int(np.count_nonzero(~np.isfinite(wav)))
    if bad:
        raise AudioFileError(path, f"{bad} non-finite samples (NaN or infinity)")
    return wav


def _check_format(path: Path, channels: int, rate: int, sample_rate: int, resample: bool) -> None:
    if channels != 1:
        raise AudioFileError(path, f"{channels} channels; expected mono audio")
    if rate != sample_rate and not resample:
        raise AudioFileError(path, f"sample rate {rate} Hz; expected {sample_rate} Hz (resampling is off)")
