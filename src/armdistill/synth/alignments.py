"""Per-phone and per-word alignments from the synthesiser's events, and frame-level labels.

An alignment is a JSON-ready dict::

    {"duration": s, "phones": [{"phone": "SIL", "start": s, "end": s}, ...],
     "words": [{"word": "the", "start": s, "end": s}, ...]}

Phone segments tile the utterance: contiguous, non-overlapping, covering ``[0, duration]``, with
SIL where nothing is said. eSpeak stamps each phoneme where it starts; timestamps drift by a few
tens of milliseconds across word boundaries, so frame labels are approximate while the phone
sequence is exact.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from armdistill.checks import check_range
from armdistill.synth.espeak import Synthesis
from armdistill.synth.phones import SILENCE, ipa_to_arpabet


class AlignmentError(ValueError):
    """The synthesiser's events do not match the text; the utterance is rejected."""


def _check_words(synthesis: Synthesis, words: Sequence[str]) -> list[int]:
    """Word events must be exactly the words, in order; returns each word's 1-based text offset."""
    offsets, pos = [], 1
    for word in words:
        offsets.append(pos)
        pos += len(word) + 1
    found = [(ev.text_position, ev.length) for ev in synthesis.words]
    expected = [(off, len(w)) for off, w in zip(offsets, words)]
    if found != expected:
        raise AlignmentError(f"word events {found} do not match the words {list(words)}")
    return offsets


def _seconds(sample: int, sample_rate: int) -> float:
    return round(sample / sample_rate, 6)


Segment = tuple[int, int, str, int | None]  # (start, end) in output samples, phone, word index


Units = dict[int, list[tuple[str, int | None]]]


def _phone_groups(synthesis: Synthesis, offsets: list[int], num_samples: int, sample_rate: int) -> Units:
    """ARPAbet units keyed by their start in output samples, each with its word index (None for SIL)."""
    word_of_offset = {off: i for i, off in enumerate(offsets)}
    scale = sample_rate / synthesis.sample_rate
    groups: Units = {0: []}
    for ev in sorted(synthesis.phonemes, key=lambda ev: ev.sample):
        start = min(num_samples, max(0, round(ev.sample * scale)))
        for phone in ipa_to_arpabet(ev.ipa):
            word = None
            if phone != SILENCE:
                word = word_of_offset.get(ev.text_position)
                if word is None:
                    raise AlignmentError(f"phoneme {ev.ipa!r} at text position {ev.text_position} belongs to no word")
            groups.setdefault(start, []).append((phone, word))
    return groups


def _tile(groups: Units, num_samples: int) -> list[Segment]:
    """Contiguous segments over ``[0, num_samples)``.

    Units stamped at the same sample share the span up to the next stamp evenly (compound IPA
    units such as ``ɑːɹ`` -> AA R too), so no phone of the sequence is lost; a pause sharing a span
    with phones yields to them, and an empty span is silence.
    """
    segments: list[Segment] = []
    bounds = sorted(groups) + [num_samples]
    for begin, end in zip(bounds[:-1], bounds[1:]):
        units = [u for u in groups[begin] if u[0] != SILENCE] or [(SILENCE, None)]
        if end - begin < len(units):
            if units[0][0] == SILENCE:
                continue
            raise AlignmentError(f"phones {[u[0] for u in units]} stamped in a span of {end - begin} samples")
        for k, (phone, word) in enumerate(units):
            sub_begin = begin + (end - begin) * k // len(units)
            sub_end = begin + (end - begin) * (k + 1) // len(units)
            segments.append((sub_begin, sub_end, phone, word))
    # Adjacent silences merge; so does a phone repeated inside one word, which is eSpeak's
    # notation (``kjˈʊɹɹiəs`` for "curious"), not a second sound.
    merged: list[Segment] = []
    for seg in segments:
        if merged and seg[2:] == merged[-1][2:]:
            merged[-1] = (merged[-1][0], seg[1], seg[2], seg[3])
        else:
            merged.append(seg)
    return merged


def build_alignment(synthesis: Synthesis, words: Sequence[str], num_samples: int, sample_rate: int) -> dict:
    """Alignment of ``words`` (spoken as ``" ".join(words)``) for audio resampled to ``sample_rate``.

    ``num_samples`` is the resampled length; event positions are rescaled from the synthesiser's
    rate. Raises :class:`AlignmentError` when the events do not match the words.
    """
    offsets = _check_words(synthesis, words)
    segments = _tile(_phone_groups(synthesis, offsets, num_samples, sample_rate), num_samples)
    spans: dict[int, tuple[int, int]] = {}
    for begin, end, _, word in segments:
        if word is not None:
            spans[word] = (spans.get(word, (begin, end))[0], end)
    missing = [words[i] for i in range(len(words)) if i not in spans]
    if missing:
        raise AlignmentError(f"no phonemes were produced for the words {missing}")
    return {
        "duration": _seconds(num_samples, sample_rate),
        "phones": [
            {"phone": p, "start": _seconds(b, sample_rate), "end": _seconds(e, sample_rate)}
            for b, e, p, _ in segments
        ],
        "words": [
            {"word": w, "start": _seconds(spans[i][0], sample_rate), "end": _seconds(spans[i][1], sample_rate)}
            for i, w in enumerate(words)
        ],
    }


def scale_alignment(alignment: dict, speed: float, num_samples: int, sample_rate: int) -> dict:
    """The alignment of the same audio played ``speed`` times faster, now ``num_samples`` long."""
    duration = _seconds(num_samples, sample_rate)

    def rescale(segments: list[dict]) -> list[dict]:
        return [{**seg, "start": min(duration, round(seg["start"] / speed, 6)),
                 "end": min(duration, round(seg["end"] / speed, 6))} for seg in segments]

    phones = rescale(alignment["phones"])
    phones[-1]["end"] = duration
    return {**alignment, "duration": duration, "phones": phones, "words": rescale(alignment["words"])}


def spoken_phones(alignment: dict) -> list[str]:
    """The phone sequence without silences (the CTC target)."""
    return [seg["phone"] for seg in alignment["phones"] if seg["phone"] != SILENCE]


def frame_labels(alignment: dict, num_frames: int, frame_rate: float = 50.0) -> list[str]:
    """The phone at the centre of each frame (``(i + 0.5) / frame_rate`` seconds); SIL past the end.

    Returns ``num_frames`` labels, e.g. targets for frame-level phone classification.
    """
    check_range("frame_rate", frame_rate, gt=0, error=ValueError)
    segments = alignment.get("phones")
    if not segments:
        raise ValueError("alignment has no 'phones' segments")
    starts = [seg["start"] for seg in segments]
    labels = []
    for i in range(num_frames):
        t = (i + 0.5) / frame_rate
        k = bisect.bisect_right(starts, t) - 1
        labels.append(segments[k]["phone"] if k >= 0 and t < segments[k]["end"] else SILENCE)
    return labels
