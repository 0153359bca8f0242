"""Manifests in the wav2vec / fairseq TSV format.

First line: the root directory. Then one line per utterance: ``relative_path<TAB>num_samples``.
Label files sit beside a manifest with the same stem (``train.tsv`` -> ``train.phn``), one
line per utterance, in the same order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from armdistill.errors import DataError, MissingFileError

# Label files that hold one line per utterance and so must shrink with the manifest.
ALIGNED_LABELS: tuple[str, ...] = ("wrd", "ltr", "phn", "spk", "lbl")


@dataclass
class Manifest:
    root: Path
    paths: list[str]
    num_samples: list[int]
    # 1-based line of each entry in the file, so errors about an entry can point at it
    line_numbers: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    def audio_path(self, index: int) -> Path:
        return self.root / self.paths[index]


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text (byte {err.start})") from None


def read_manifest(path: str | Path) -> Manifest:
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: manifest not found")
    lines = _read_lines(path)
    if not lines:
        raise DataError(f"{path}: empty manifest; expected the root directory on the first line")
    nul = next((i for i, line in enumerate(lines, start=1) if "\x00" in line), None)
    if nul is not None:
        raise DataError(f"{path}:{nul}: a NUL byte, which no path can hold")
    root = Path(lines[0].strip())
    if not root.is_absolute():
        root = (path.parent / root).resolve()
    paths, sizes, line_numbers = [], [], []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2 or not parts[0].strip() or not (parts[1].strip().isascii() and parts[1].strip().isdigit()):
            raise DataError(f"{path}:{lineno}: expected 'relative_path<TAB>num_samples', got {line!r}")
        paths.append(parts[0])
        sizes.append(int(parts[1]))
        line_numbers.append(lineno)
    return Manifest(root=root, paths=paths, num_samples=sizes, line_numbers=line_numbers)


def write_manifest(path: str | Path, root: str | Path, rows: list[tuple[str, int]]) -> None:
    """Write ``rows`` of (relative path, num samples) under ``root``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [str(root)] + [f"{rel}\t{n}" for rel, n in rows]
    path.write_text("\n".join(lines) + "\n")


def label_path(manifest_path: str | Path, ext: str) -> Path:
    """``train.tsv`` + ``phn`` -> ``train.phn``."""
    return Path(manifest_path).with_suffix("." + ext.lstrip("."))


def read_labels(manifest_path: str | Path, ext: str, expected: int | None = None) -> list[str]:
    path = label_path(manifest_path, ext)
    if not path.is_file():
        raise MissingFileError(f"{path}: label file not found (expected beside {manifest_path})")
    labels = _read_lines(path)
    if expected is not None and len(labels) != expected:
        raise DataError(f"{path}: {len(labels)} lines, but the manifest lists {expected} utterances")
    return labels


def write_subset(
    manifest_path: str | Path, keep: Sequence[int], target: str | Path, labels: Sequence[str] = ALIGNED_LABELS
) -> Path:
    """Write the entries ``keep`` (0-based) of a manifest to ``target``, with the ``labels`` files beside it."""
    manifest_path, target = Path(manifest_path), Path(target)
    if target.resolve() == manifest_path.resolve():
        raise DataError(f"{target}: a subset would overwrite the manifest it is taken from; write it elsewhere")
    entries = read_manifest(manifest_path)
    write_manifest(target, entries.root, [(entries.paths[i], entries.num_samples[i]) for i in keep])
    for ext in labels:
        if label_path(manifest_path, ext).is_file():
            lines = read_labels(manifest_path, ext, expected=len(entries))
            label_path(target, ext).write_text("".join(lines[i] + "\n" for i in keep))
    return target
