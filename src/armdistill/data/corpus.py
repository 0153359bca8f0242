"""Manifests from any folder tree of audio files, with optional transcripts.

Audio: every ``.wav``, ``.flac`` and ``.ogg`` file under the folder (recursive), or the files a
``--glob`` pattern matches. Sizes come from the headers, in samples at the target rate.
Transcripts, the first kind found: a TSV of ``id<TAB>text`` lines given explicitly, LibriSpeech's
``*.trans.txt`` files, or a sidecar ``NAME.txt`` beside each ``NAME.wav``. An id is the file's
path under the folder without its extension (``spk1/utt01``), or its bare name (``utt01``) when
that is unique in the tree. With transcripts every file must have one; ``SPLIT.wrd`` gets the
text with single spaces and ``SPLIT.ltr`` the fairseq letters (``H E Y | Y O U |``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from armdistill.data.audio import target_num_samples
from armdistill.data.librispeech import TRANSCRIPT_GLOB, has_transcripts, read_transcripts
from armdistill.data.manifest import label_path, write_manifest
from armdistill.errors import DataError
from armdistill.frames import SAMPLE_RATE

AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".ogg")
SIDECAR_SUFFIX = ".txt"


@dataclass(frozen=True)
class ManifestSummary:
    name: str
    manifest: Path
    utterances: int
    seconds: float
    transcripts: str | None  # where the transcripts came from: "tsv", "librispeech", "sidecar" or None


def words_to_letters(words: str) -> str:
    """``"HEY YOU"`` -> ``"H E Y | Y O U |"``: letters split by spaces, ``|`` ends every word."""
    return " ".join(words.replace(" ", "|")) + " |"


def find_audio(directory: Path, pattern: str | None = None) -> list[Path]:
    """Audio files under ``directory`` in path order: those ``pattern`` matches, or every audio extension."""
    if pattern is not None:
        return sorted(p for p in directory.glob(pattern) if p.is_file())
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)


def read_transcript_tsv(path: Path) -> dict[str, str]:
    """``id<TAB>text`` lines -> id -> text with single spaces."""
    if not path.is_file():
        raise DataError(f"{path}: transcript file not found")
    texts: dict[str, str] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        utt, sep, text = line.partition("\t")
        text = " ".join(text.split())
        if not sep or not utt.strip() or not text:
            raise DataError(f"{path}:{lineno}: expected 'id<TAB>text', got {line!r}")
        if utt in texts:
            raise DataError(f"{path}:{lineno}: id {utt!r} appears twice")
        texts[utt] = text
    return texts


def _match_ids(directory: Path, files: list[Path], texts: dict[str, str], source: Path) -> dict[Path, str]:
    by_path = {f.relative_to(directory).with_suffix("").as_posix(): f for f in files}
    stems = Counter(f.stem for f in files)
    by_name = {f.stem: f for f in files if stems[f.stem] == 1}
    matched: dict[Path, str] = {}
    for utt, text in texts.items():
        audio = by_path.get(utt) or by_name.get(utt)
        if audio is None:
            continue  # one transcript file may serve several folders
        if audio in matched:
            raise DataError(f"{source}: two ids name {audio} (its path and its bare name)")
        matched[audio] = text
    if not matched:
        raise DataError(f"{source}: no id matches an audio file under {directory} (ids are paths under it "
                        "without the extension, e.g. 'spk1/utt01', or unique bare names)")
    return matched


def _sidecars(files: list[Path]) -> dict[Path, str]:
    texts = {}
    for audio in files:
        sidecar = audio.with_suffix(SIDECAR_SUFFIX)
        if sidecar.is_file():
            text = " ".join(sidecar.read_text(encoding="utf-8").split())
            if not text:
                raise DataError(f"{sidecar}: empty transcript")
            texts[audio] = text
    return texts


def corpus_transcripts(directory: Path, files: list[Path], tsv: Path | None) -> tuple[dict[Path, str], str | None]:
    """Audio path -> words for every file, and their source; ``({}, None)`` for an untranscribed tree."""
    if tsv is not None:
        texts, source = _match_ids(directory, files, read_transcript_tsv(tsv), tsv), "tsv"
    elif has_transcripts(directory):
        texts, source = read_transcripts(directory), "librispeech"
    else:
        texts = _sidecars(files)
        source = "sidecar" if texts else None
    if texts:
        missing = [path for path in files if path not in texts]
        if missing:
            where = {"tsv": str(tsv), "librispeech": f"the {TRANSCRIPT_GLOB} files", "sidecar": "a sidecar .txt"}[source]
            raise DataError(f"{missing[0]}: no transcript for it in {where} ({len(missing)} of {len(files)} files lack one)")
    return texts, source


def build_manifest(
    directory: str | Path,
    out_dir: str | Path,
    pattern: str | None = None,
    transcripts: str | Path | None = None,
    sample_rate: int = SAMPLE_RATE,
    resample: bool = True,
    progress: bool = True,
) -> ManifestSummary:
    """Write ``out_dir/NAME.tsv`` (+ ``.wrd``/``.ltr`` with transcripts) for the folder ``NAME``, in path order."""
    directory = Path(directory).resolve()
    if not directory.is_dir():
        raise DataError(f"{directory}: audio folder not found")
    files = find_audio(directory, pattern)
    if not files:
        kinds = f"files matching {pattern!r}" if pattern else f"{'/'.join(AUDIO_EXTENSIONS)} files"
        raise DataError(f"{directory}: no {kinds} found")
    texts, source = corpus_transcripts(directory, files, None if transcripts is None else Path(transcripts))
    rows = []
    for path in tqdm(files, desc=directory.name, unit="file", disable=not progress):
        rows.append((path.relative_to(directory).as_posix(), target_num_samples(path, sample_rate, resample)))
    manifest = Path(out_dir) / f"{directory.name}.tsv"
    write_manifest(manifest, directory, rows)
    if texts:
        words = [texts[path] for path in files]
        label_path(manifest, "wrd").write_text("".join(w + "\n" for w in words), encoding="utf-8")
        label_path(manifest, "ltr").write_text("".join(words_to_letters(w) + "\n" for w in words), encoding="utf-8")
    return ManifestSummary(
        name=directory.name, manifest=manifest, utterances=len(rows), seconds=sum(n for _, n in rows) / sample_rate,
        transcripts=source,
    )
