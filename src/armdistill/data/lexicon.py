"""Phone transcripts from word transcripts with a pronunciation lexicon (SUPERB's PR labels).

A lexicon line is ``WORD<TAB or spaces>PH1 PH2 ...`` (CMUdict / the g2p lexicons that s3prl's
phone-recognition recipe reads). Stress digits are stripped (``AH0`` -> ``AH``), so every phone
must then be one of the 39 ARPAbet phones. The first pronunciation of a word wins, as in s3prl
(deterministic labels); CMUdict's alternates ``WORD(2)`` and ``;;;`` comment lines are skipped.

``phonemize_manifest`` writes ``SPLIT.phn`` beside ``SPLIT.tsv`` (one phone sequence a line),
which ``armdistill probe --task pr`` reads.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from armdistill.data.manifest import ALIGNED_LABELS, label_path, read_labels, read_manifest, write_subset
from armdistill.data.phones import ARPABET
from armdistill.errors import DataError, MissingFileError

Lexicon = dict[str, tuple[str, ...]]

_ALTERNATE = re.compile(r"^(.+)\(\d+\)$")
_STRESS = str.maketrans("", "", "012")
_PHONES = frozenset(ARPABET)
_SHOWN = 20


class MissingWordsError(DataError):
    """Words of a transcript that the lexicon lacks; ``words`` maps each to its count."""

    def __init__(self, message: str, words: Counter[str]):
        super().__init__(message)
        self.words = words


def read_lexicon(path: str | Path) -> Lexicon:
    """``WORD PH1 PH2 ...`` lines -> upper-case word -> 39-set phones (first pronunciation wins)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: lexicon not found")
    lexicon: Lexicon = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text (byte {err.start})") from None
    for lineno, line in enumerate(lines, start=1):
        if not line.strip() or line.startswith(";;;"):
            continue
        word, *phones = line.split()
        if not phones:
            raise DataError(f"{path}:{lineno}: expected 'WORD PH1 PH2 ...', got {line!r}")
        if _ALTERNATE.match(word):
            continue
        stripped = tuple(p.upper().translate(_STRESS) for p in phones)
        unknown = sorted({p for p in stripped if p not in _PHONES})
        if unknown:
            raise DataError(f"{path}:{lineno}: {word}: phone(s) {', '.join(unknown)} are not in the 39-phone "
                             f"ARPAbet set (after removing stress digits)")
        lexicon.setdefault(word.upper(), stripped)
    if not lexicon:
        raise DataError(f"{path}: no pronunciations found")
    return lexicon


def missing_words(transcripts: list[str], lexicon: Lexicon) -> Counter[str]:
    """Each word of ``transcripts`` that ``lexicon`` lacks, with its number of occurrences."""
    return Counter(w for line in transcripts for w in line.upper().split() if w not in lexicon)


def to_phones(words: str, lexicon: Lexicon) -> list[str]:
    """``"HELLO WORLD"`` -> the concatenated phones of its words; KeyError names a missing word."""
    phones: list[str] = []
    for word in words.upper().split():
        if word not in lexicon:
            raise KeyError(word)
        phones.extend(lexicon[word])
    return phones


@dataclass(frozen=True)
class PhonemizeSummary:
    manifest: Path
    phones: Path
    utterances: int
    skipped: int
    missing: Counter[str]


def _describe(missing: Counter[str]) -> str:
    shown = ", ".join(f"{w} ({n}x)" if n > 1 else w for w, n in missing.most_common(_SHOWN))
    more = f" and {len(missing) - _SHOWN} more" if len(missing) > _SHOWN else ""
    return f"{len(missing)} word(s) not in the lexicon: {shown}{more}"


def phonemize_manifest(
    manifest: str | Path,
    lexicon: Lexicon,
    lexicon_name: str = "lexicon",
    out_dir: str | Path | None = None,
    skip_missing: bool = False,
) -> PhonemizeSummary:
    """Write ``SPLIT.phn`` from ``SPLIT.wrd`` for the manifest ``SPLIT.tsv``.

    Without ``skip_missing`` any word missing from the lexicon raises :class:`MissingWordsError`
    naming the words. With it, utterances holding such words are dropped: the manifest and its
    line-aligned label files (``ALIGNED_LABELS`` but ``.phn``) are written, filtered, to ``out_dir``, which must
    then differ from the manifest's own directory so the originals are kept.
    """
    manifest = Path(manifest)
    entries = read_manifest(manifest)
    words = read_labels(manifest, "wrd", expected=len(entries))
    missing = missing_words(words, lexicon)
    if missing and not skip_missing:
        raise MissingWordsError(f"{label_path(manifest, 'wrd')}: {_describe(missing)} ({lexicon_name}); "
                                "add them to the lexicon or skip those utterances (--skip-missing)", missing)
    out = Path(out_dir) if out_dir is not None else manifest.parent
    keep = [i for i, line in enumerate(words) if not any(w not in lexicon for w in line.upper().split())]
    dropped = len(words) - len(keep)
    if dropped and out.resolve() == manifest.parent.resolve():
        raise DataError(f"{manifest}: {dropped} utterance(s) would be dropped, which rewrites the manifest; "
                         "give an output directory other than the manifest's own")
    for i in keep:
        if not words[i].split():
            raise DataError(f"{label_path(manifest, 'wrd')}:{i + 1}: empty transcript (no phones to write)")
    out.mkdir(parents=True, exist_ok=True)
    target = out / manifest.name
    if dropped or target.resolve() != manifest.resolve():
        write_subset(manifest, keep, target, labels=[ext for ext in ALIGNED_LABELS if ext != "phn"])
    phones = label_path(target, "phn")
    phones.write_text("".join(" ".join(to_phones(words[i], lexicon)) + "\n" for i in keep))
    return PhonemizeSummary(manifest=target, phones=phones, utterances=len(keep), skipped=dropped, missing=missing)
