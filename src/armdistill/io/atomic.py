"""Atomic writes: a file or a directory appears complete under its name or not at all.

The new content goes to a temporary entry beside the target (never ``$TMPDIR``: a rename across
filesystems is a copy, which a kill can tear), is flushed and fsynced, then renamed over the
target with ``os.replace``; the parent directory is fsynced so the rename survives a power
cut. A kill mid-write leaves only a hidden temporary entry (``.NAME.tmp-XXXX``), which
:func:`remove_orphans` clears on the next start.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

TEMP_TAG = ".tmp-"
OLD_TAG = ".old-"


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _discard(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def atomic_file(target: str | Path) -> Iterator[BinaryIO]:
    """``with atomic_file(path) as f: f.write(...)``: ``path`` is replaced only once ``f`` is complete."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}{TEMP_TAG}", dir=target.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_path(target.parent)


def write_text_atomic(target: str | Path, text: str) -> None:
    with atomic_file(target) as f:
        f.write(text.encode("utf-8"))


@contextmanager
def atomic_directory(target: str | Path) -> Iterator[Path]:
    """``with atomic_directory(d) as tmp: write files into tmp``: ``d`` then holds exactly them.

    An existing ``d`` is moved aside, the new one renamed in, and the old one removed; a kill
    between the two renames leaves the old copy as ``.d.old-XXXX``, which
    :func:`remove_orphans` puts back.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}{TEMP_TAG}", dir=target.parent))
    try:
        yield tmp
        for entry in tmp.rglob("*"):
            if entry.is_file():
                _fsync_path(entry)
        _fsync_path(tmp)
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}{OLD_TAG}", dir=target.parent))
            os.replace(target, old)
        os.replace(tmp, target)
        _fsync_path(target.parent)
    except BaseException:
        _discard(tmp)
        raise
    if old is not None:
        shutil.rmtree(old)


def remove_orphans(directory: str | Path) -> list[Path]:
    """Clear what killed atomic writes left in ``directory``; returns the entries removed.

    Temporary entries are deleted. A moved-aside old directory whose target is missing (a kill
    between the renames of :func:`atomic_directory`) is renamed back, so it is not reported.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for entry in sorted(directory.iterdir()):
        name = entry.name
        if not name.startswith("."):
            continue
        for tag in (TEMP_TAG, OLD_TAG):
            stem, found, _ = name[1:].rpartition(tag)
            if not found or not stem:
                continue
            target = directory / stem
            if tag == OLD_TAG and not target.exists():
                os.replace(entry, target)
            else:
                _discard(entry)
                removed.append(entry)
            break
    return removed
