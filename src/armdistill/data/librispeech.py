"""Manifests from a LibriSpeech tree: ``SPLIT/speaker/chapter/speaker-chapter-NNNN.flac`` plus
one ``speaker-chapter.trans.txt`` per chapter (``UTTERANCE-ID WORDS...`` per line).

Writes ``SPLIT.tsv`` (sizes from the FLAC headers, in samples at the target rate),
``SPLIT.wrd`` (upper-case words) and ``SPLIT.ltr`` (fairseq letters: ``H E Y | Y O U |``).
A tree without any transcript gets the ``.tsv`` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from armdistill.data.audio import target_num_samples
from armdistill.data.manifest import label_path, write_manifest
from armdistill.errors import DataError, MissingFileError


@dataclass(frozen=True)
class SplitSummary:
    name: str
    manifest: Path
    utterances: int
    seconds: float
    labelled: bool


def words_to_letters(words: str) -> str:
    """``"HEY YOU"`` -> ``"H E Y | Y O U |"``: letters split by spaces, ``|`` ends every word."""
    return " ".join(words.replace(" ", "|")) + " |"


def read_transcripts(split_dir: Path) -> dict[Path, str]:
    """Audio path -> normalised words, from every ``*.trans.txt`` under ``split_dir``."""
    transcripts: dict[Path, str] = {}
    for trans in sorted(split_dir.rglob("*.trans.txt")):
        for lineno, line in enumerate(trans.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            utterance, _, words = line.strip().partition(" ")
            words = " ".join(words.upper().split())
            if not words:
                raise DataError(f"{trans}:{lineno}: expected 'UTTERANCE-ID WORDS...', got {line!r}")
            audio = trans.parent / f"{utterance}.flac"
            if not audio.is_file():
                raise MissingFileError(f"{trans}:{lineno}: no audio file {audio.name} for utterance {utterance}")
            if audio in transcripts:
                raise DataError(f"{trans}:{lineno}: utterance {utterance} transcribed twice")
            transcripts[audio] = words
    return transcripts


def build_split_manifest(
    split_dir: str | Path,
    out_dir: str | Path,
    sample_rate: int = 16000,
    resample: bool = True,
    progress: bool = True,
) -> SplitSummary:
    """Write ``out_dir/SPLIT.tsv`` (+ ``.wrd``/``.ltr``) for one split directory, in path order."""
    split_dir = Path(split_dir).resolve()
    if not split_dir.is_dir():
        raise MissingFileError(f"{split_dir}: split directory not found")
    audio_files = sorted(split_dir.rglob("*.flac"))
    if not audio_files:
        raise DataError(f"{split_dir}: no .flac files found")
    transcripts = read_transcripts(split_dir)
    if transcripts:
        missing = [path for path in audio_files if path not in transcripts]
        if missing:
            raise DataError(
                f"{missing[0]}: no line for it in the chapter's .trans.txt ({len(missing)} files lack one)"
            )
    rows = []
    bar = tqdm(audio_files, desc=split_dir.name, unit="file", disable=not progress)
    for path in bar:
        rows.append((path.relative_to(split_dir).as_posix(), target_num_samples(path, sample_rate, resample)))
    manifest = Path(out_dir) / f"{split_dir.name}.tsv"
    write_manifest(manifest, split_dir, rows)
    if transcripts:
        words = [transcripts[path] for path in audio_files]
        label_path(manifest, "wrd").write_text("".join(w + "\n" for w in words))
        label_path(manifest, "ltr").write_text("".join(words_to_letters(w) + "\n" for w in words))
    return SplitSummary(
        name=split_dir.name,
        manifest=manifest,
        utterances=len(rows),
        seconds=sum(n for _, n in rows) / sample_rate,
        labelled=bool(transcripts),
    )
