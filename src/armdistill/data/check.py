"""``check-data``'s work: decode every file of a manifest, in parallel, and list every problem.

Each file is read as training reads it (:func:`~armdistill.data.audio.load_audio`), but whole:
it must exist, decode, be mono (at the sample rate when resampling is off), give the sample
count the manifest lists, hold only finite samples and last at least one model frame.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from armdistill.data.audio import AudioFileError, load_audio
from armdistill.data.bad_audio import BadItem
from armdistill.data.manifest import read_manifest, write_subset
from armdistill.frames import SAMPLE_RATE

# files per task handed to a worker: large enough to amortise the hand-off, small enough for a live bar
CHUNK = 16
Job = tuple[int, str, int]  # (entry, audio path, samples the manifest lists)


@dataclass(frozen=True)
class CheckReport:
    manifest: Path
    total: int
    bad: list[BadItem]  # in manifest order


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _check_chunk(jobs: list[Job], sample_rate: int, resample: bool, min_samples: int) -> list[tuple[int, AudioFileError]]:
    problems = []
    for entry, path, expected in jobs:
        try:
            load_audio(path, sample_rate, resample, expected=expected, min_samples=min_samples)
        except AudioFileError as err:
            problems.append((entry, err))
    return problems


def check_manifest(
    manifest_path: str | Path,
    min_samples: int,
    sample_rate: int = SAMPLE_RATE,
    resample: bool = True,
    workers: int = 1,
    progress: bool = True,
) -> CheckReport:
    """Decode every file of the manifest with ``workers`` processes (1: in this one)."""
    manifest_path = Path(manifest_path)
    manifest = read_manifest(manifest_path)
    jobs = [(i, str(manifest.audio_path(i)), manifest.num_samples[i]) for i in range(len(manifest))]
    chunks = [jobs[i : i + CHUNK] for i in range(0, len(jobs), CHUNK)]
    found: list[tuple[int, AudioFileError]] = []
    with tqdm(total=len(jobs), desc=manifest_path.name, unit="file", disable=not progress) as bar:
        if workers <= 1:
            for chunk in chunks:
                found += _check_chunk(chunk, sample_rate, resample, min_samples)
                bar.update(len(chunk))
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                futures = [pool.submit(_check_chunk, chunk, sample_rate, resample, min_samples) for chunk in chunks]
                for chunk, future in zip(chunks, futures):
                    found += future.result()
                    bar.update(len(chunk))
    bad = [BadItem.from_error(manifest_path, manifest.line_numbers[i], err) for i, err in sorted(found, key=lambda f: f[0])]
    return CheckReport(manifest=manifest_path, total=len(jobs), bad=bad)


def write_clean(report: CheckReport, out_dir: str | Path) -> Path:
    """``out_dir/NAME.tsv`` (+ its label files) without the bad entries of ``report``."""
    manifest = read_manifest(report.manifest)
    bad_lines = {item.line for item in report.bad}
    keep = [i for i, line in enumerate(manifest.line_numbers) if line not in bad_lines]
    return write_subset(report.manifest, keep, Path(out_dir) / report.manifest.name)
