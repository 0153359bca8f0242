"""Worker side of corpus generation: synthesise planned utterances and write their audio.

Runs in fresh worker processes, each with its own eSpeak NG instance (the library keeps global
state, including a pitch-flutter phase that carries over from one utterance to the next and
shifts timings). A chunk of the plan rendered in a fresh process always gives the same labels,
lengths and alignments.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from armdistill.data.augment import SYNTH_AUGMENT, Augmenter
from armdistill.frames import SAMPLE_RATE
from armdistill.synth.alignments import AlignmentError, build_alignment, scale_alignment, spoken_phones
from armdistill.synth.phones import UnknownPhoneError
from armdistill.synth.speakers import LANGUAGE, Speaker

_ESPEAK_RATE = 22050
# resample_poly needs the exact ratio (320 / 441).
_RATIO = Fraction(SAMPLE_RATE, _ESPEAK_RATE)


@dataclass(frozen=True)
class UtteranceSpec:
    """One planned utterance. Keyword-spotting clips set ``label`` and the padding/noise fields."""

    uid: str
    rel_path: str
    speaker: Speaker
    words: tuple[str, ...]
    label: str | None = None
    lead_seconds: float = 0.0
    min_seconds: float = 0.0
    peak: float = 0.0
    snr_db: float | None = None
    noise_seed: int = 0
    augment_seed: int | None = None  # set: the audio is augmented (``SYNTH_AUGMENT``) with this seed


_synth = None


def init_worker() -> None:
    """Pool initializer: create this process's synthesiser."""
    global _synth
    from armdistill.synth.espeak import Synthesizer

    _synth = Synthesizer()
    if _synth.sample_rate != _ESPEAK_RATE:
        raise RuntimeError(f"eSpeak NG produced {_synth.sample_rate} Hz; expected {_ESPEAK_RATE}")


def _pad_and_noise(audio: np.ndarray, spec: UtteranceSpec) -> np.ndarray:
    """Keyword clip: scale to ``peak``, place after ``lead_seconds`` of silence, add white noise."""
    lead = int(round(spec.lead_seconds * SAMPLE_RATE))
    total = max(int(round(spec.min_seconds * SAMPLE_RATE)), lead + len(audio))
    out = np.zeros(total, dtype=np.float32)
    out[lead : lead + len(audio)] = audio * (spec.peak / max(float(np.abs(audio).max()), 1e-4))
    if spec.snr_db is not None:
        speech_power = float(np.mean(out[lead : lead + len(audio)] ** 2))
        noise_std = np.sqrt(speech_power / 10 ** (spec.snr_db / 10))
        out += np.random.default_rng(spec.noise_seed).normal(0.0, noise_std, total).astype(np.float32)
    return out


def render(spec: UtteranceSpec, out_dir: Path) -> dict:
    """Synthesise, resample to 16 kHz, write ``out_dir/spec.rel_path``; returns the record or a rejection."""
    import soundfile as sf
    from scipy.signal import resample_poly

    if _synth is None:
        raise RuntimeError("render() runs in a worker started with init_worker()")
    s = spec.speaker
    _synth.set_voice(LANGUAGE, s.variant, s.rate, s.pitch, s.pitch_range, s.volume)
    synthesis = _synth.synthesize(" ".join(spec.words))
    audio = resample_poly(synthesis.audio, _RATIO.numerator, _RATIO.denominator).astype(np.float32)
    try:
        alignment = build_alignment(synthesis, spec.words, len(audio), SAMPLE_RATE)
    except UnknownPhoneError as err:
        return {"uid": spec.uid, "rejected": "unknown_phone", "reason": str(err)}
    except AlignmentError as err:
        return {"uid": spec.uid, "rejected": "word_mismatch", "reason": str(err)}
    if spec.label is not None:
        audio = _pad_and_noise(audio, spec)
    if spec.augment_seed is not None:
        audio, speed = Augmenter(SYNTH_AUGMENT, SAMPLE_RATE).augment(audio, np.random.default_rng(spec.augment_seed))
        alignment = scale_alignment(alignment, speed, len(audio), SAMPLE_RATE)
    path = out_dir / spec.rel_path
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(audio, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16")
    return {
        "uid": spec.uid,
        "path": spec.rel_path,
        "num_samples": int(len(audio)),
        "speaker": s.id,
        "words": list(spec.words),
        "phones": spoken_phones(alignment),
        "label": spec.label,
        # A keyword clip's padding moved its timings; it needs only its label.
        "alignment": alignment if spec.label is None else None,
    }


def render_chunk(args: tuple[list[UtteranceSpec], str]) -> list[dict]:
    """Pool task: render a chunk of specs in order."""
    specs, out_dir = args
    return [render(spec, Path(out_dir)) for spec in specs]
