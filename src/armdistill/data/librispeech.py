"""LibriSpeech transcripts: one ``speaker-chapter.trans.txt`` per chapter directory, holding
``UTTERANCE-ID WORDS...`` lines for the chapter's ``UTTERANCE-ID.flac`` files.

The words are upper-cased with single spaces (LibriSpeech's own form), which
``armdistill manifest`` writes as ``SPLIT.wrd`` and, spelled out, ``SPLIT.ltr``.
"""

from __future__ import annotations

from pathlib import Path

from armdistill.errors import DataError

TRANSCRIPT_GLOB = "*.trans.txt"


def has_transcripts(split_dir: Path) -> bool:
    return next(split_dir.rglob(TRANSCRIPT_GLOB), None) is not None


def read_transcripts(split_dir: Path) -> dict[Path, str]:
    """Audio path -> normalised words, from every ``*.trans.txt`` under ``split_dir``."""
    transcripts: dict[Path, str] = {}
    for trans in sorted(split_dir.rglob(TRANSCRIPT_GLOB)):
        for lineno, line in enumerate(trans.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            utterance, _, words = line.strip().partition(" ")
            words = " ".join(words.upper().split())
            if not words:
                raise DataError(f"{trans}:{lineno}: expected 'UTTERANCE-ID WORDS...', got {line!r}")
            audio = trans.parent / f"{utterance}.flac"
            if not audio.is_file():
                raise DataError(f"{trans}:{lineno}: no audio file {audio.name} for utterance {utterance}")
            if audio in transcripts:
                raise DataError(f"{trans}:{lineno}: utterance {utterance} transcribed twice")
            transcripts[audio] = words
    return transcripts
