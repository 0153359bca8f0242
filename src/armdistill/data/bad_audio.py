"""What to do with an unusable audio file (``on_bad_audio``), and the record of skipped ones.

``error`` stops at the first bad file with one line naming it, its manifest line and the
problem. ``skip`` drops it from its batch and appends it to ``RUN_DIR/skipped.tsv``
(``manifest<TAB>line<TAB>file<TAB>problem``), which a resumed run reads back so it drops the
same files again without reading them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Literal, NamedTuple, get_args

from armdistill.data.audio import AudioFileError
from armdistill.errors import DataError

BadAudioPolicy = Literal["error", "skip"]
BAD_AUDIO_POLICIES: tuple[str, ...] = get_args(BadAudioPolicy)
SKIPPED_NAME = "skipped.tsv"
_HEADER = "manifest\tline\tfile\tproblem"


class BadItem(NamedTuple):
    """One unusable manifest entry: the manifest (resolved path), its 1-based line, the file, the problem."""

    manifest: str
    line: int
    path: str
    problem: str

    @classmethod
    def from_error(cls, manifest: str | Path, line: int, err: AudioFileError) -> "BadItem":
        return cls(str(Path(manifest).resolve()), line, err.path, err.problem)

    def error(self) -> AudioFileError:
        return AudioFileError(self.path, self.problem, f"{self.manifest}:{self.line}")


class SkipLog:
    """``skipped.tsv`` of a run: read at start, appended to (and fsynced) as files are skipped.

    A kill can tear only the last line, which is dropped when the log is read back.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.items: dict[tuple[str, int], BadItem] = {}
        if not self.path.is_file():
            return
        data = self.path.read_bytes()
        complete = data.rfind(b"\n") + 1
        if complete < len(data):  # a line without its newline was torn by a kill
            os.truncate(self.path, complete)
        lines = data[:complete].decode("utf-8").split("\n")[:-1]
        if lines and lines[0] != _HEADER:
            raise DataError(f"{self.path}: expected the header {_HEADER!r}, got {lines[0]!r}")
        for lineno, line in enumerate(lines[1:], start=2):
            parts = line.split("\t")
            if len(parts) != 4 or not parts[1].isdigit():
                raise DataError(f"{self.path}:{lineno}: expected 'manifest<TAB>line<TAB>file<TAB>problem', got {line!r}")
            item = BadItem(parts[0], int(parts[1]), parts[2], parts[3])
            self.items[(item.manifest, item.line)] = item

    def __len__(self) -> int:
        return len(self.items)

    def known(self, manifest: str | Path) -> dict[int, str]:
        """Manifest line -> problem, for the entries of ``manifest`` skipped before."""
        key = str(Path(manifest).resolve())
        return {line: item.problem for (name, line), item in self.items.items() if name == key}

    def add(self, items: Iterable[BadItem]) -> list[BadItem]:
        """Record the items not yet recorded; returns those."""
        new = list({(item.manifest, item.line): item._replace(problem=" ".join(item.problem.split()))
                    for item in items if (item.manifest, item.line) not in self.items}.values())
        if not new:
            return []
        fresh = not self.path.is_file() or self.path.stat().st_size == 0
        with self.path.open("a", encoding="utf-8") as f:
            if fresh:
                f.write(_HEADER + "\n")
            for item in new:
                f.write(f"{item.manifest}\t{item.line}\t{item.path}\t{item.problem}\n")
                self.items[(item.manifest, item.line)] = item
            f.flush()
            os.fsync(f.fileno())
        return new
