"""Generated data, a tiny random teacher and tiny-recipe overrides for the training tests."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from armdistill.data.manifest import write_manifest
from armdistill.teachers import make_random_teacher

REPO = Path(__file__).resolve().parents[1]
TINY_RECIPE = REPO / "configs" / "tiny.yaml"
SAMPLE_RATE = 16000

STEPS = 12
# 16 clips of 1-2 s, 2 per micro-batch -> 8 micro-batches per epoch, 2 per optimiser step: epochs end at steps 4, 8, 12
RUN = ["data.micro_batch_seconds=4.0", "data.effective_batch_seconds=8.0", "data.num_buckets=2", "data.max_batch_size=2",
       "trainer.deterministic=true", "optim.lr=5.0e-3"]
# the shared uninterrupted run (the ``distill_reference`` fixture) and the runs compared with it
REFERENCE = [*RUN, f"trainer.max_steps={STEPS}", "trainer.checkpoint_every_steps=1", "trainer.keep_checkpoints=-1",
             "trainer.val_every_steps=2"]

# tiny-arm cut down to 32 channels / width 32: still stride 320 with the teacher's kernels
SMALL_STUDENT = [
    "student.conv_layers=[[32,10,5],[32,3,2],[32,3,2],[32,3,2],[32,3,2],[32,2,2],[32,2,2]]",
    "student.dim=32", "student.ffn_dim=64", "student.num_heads=2", "student.pos_conv_kernel=16",
    "student.pos_conv_groups=4",
]


def cli(*args: str) -> list[str]:
    """``armdistill distill`` on the tiny recipe, as a subprocess command line."""
    return [sys.executable, "-m", "armdistill.cli", "distill", "--config", str(TINY_RECIPE), *args]


def write_audio(directory: Path, name: str, durations: list[float], seed: int) -> Path:
    """Harmonic tones with noise (learnable structure), one file per duration; returns the manifest."""
    rng = np.random.default_rng(seed)
    audio_dir = directory / name
    audio_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, seconds in enumerate(durations):
        n = int(seconds * SAMPLE_RATE)
        t = np.arange(n) / SAMPLE_RATE
        f0 = rng.uniform(100, 300)
        wav = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.3)) / k for k in range(1, 5))
        wav = 0.3 * wav * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(1, 4) * t)) + 0.02 * rng.standard_normal(n)
        sf.write(audio_dir / f"{i:03d}.wav", wav.astype(np.float32), SAMPLE_RATE)
        rows.append((f"{i:03d}.wav", n))
    manifest = directory / f"{name}.tsv"
    write_manifest(manifest, audio_dir, rows)
    return manifest


def make_workdir(directory: Path) -> dict[str, Path]:
    """A 2-layer width-32 random HuBERT teacher, 16 training clips (1-2 s) and 2 held-out clips."""
    train = write_audio(directory, "train", [1.0, 1.2, 1.4, 1.6, 1.0, 1.5, 2.0, 1.8] * 2, seed=1)
    valid = write_audio(directory, "valid", [1.3, 1.7], seed=2)
    teacher = make_random_teacher(directory / "teacher", seed=3)
    return {"teacher": teacher, "train": train, "valid": valid}


def overrides(work: dict[str, Path], output_dir: Path, *extra: str) -> list[str]:
    """Tiny-recipe overrides: the small student, generated data, CSV logs every step, no progress bar."""
    return [
        f"teacher.path={work['teacher']}", f"data.train={work['train']}", f"data.valid={work['valid']}",
        f"output_dir={output_dir}", "trainer.progress_bar=none", "trainer.log_every_steps=1", *SMALL_STUDENT, *extra,
    ]


def logged(output_dir: Path, key: str) -> dict[int, float]:
    """``step -> value`` of a metric from every CSV log version under ``output_dir`` (later versions win)."""
    values: dict[int, float] = {}
    for path in sorted((output_dir / "logs" / "csv").glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name[8:])):
        with path.open() as f:
            for row in csv.DictReader(f):
                if row.get(key):
                    values[int(row["step"])] = float(row[key])
    return values
