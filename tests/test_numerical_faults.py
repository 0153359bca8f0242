"""Numerical faults never reach the weights: a step with a non-finite loss or gradient is skipped
bit-identically, a run that keeps diverging stops with one line, and no file on disk is non-finite."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

from _distill_helpers import RUN, SAMPLE_RATE, TINY_RECIPE, logged, overrides, write_audio
from armdistill.cli import main
from armdistill.data.audio import load_audio
from armdistill.data.manifest import read_manifest, write_manifest
from armdistill.distill.config import load_config
from armdistill.distill.guard import NonFiniteGuard
from armdistill.distill.train import run_distillation
from armdistill.errors import DataError, NonFiniteError
from armdistill.models.student import Student

# 2 clips per micro-batch, 2 micro-batches per optimiser step; a checkpoint after every step
FAULT_RUN = [*RUN, "data.valid=null", "trainer.checkpoint_every_steps=1", "trainer.keep_checkpoints=-1"]
STEPS = 7


def _with_clip(directory: Path, name: str, wav: np.ndarray) -> Path:
    """Generated training clips plus ``wav`` (float WAV), as the manifest ``name``.tsv."""
    manifest = write_audio(directory, name, [1.0, 1.2, 1.4, 1.6, 1.0, 1.5, 2.0, 1.8] * 2, seed=1)
    sf.write(directory / name / "odd.wav", wav, SAMPLE_RATE, subtype="FLOAT")
    entries = read_manifest(manifest)
    write_manifest(manifest, entries.root, [*zip(entries.paths, entries.num_samples), ("odd.wav", len(wav))])
    return manifest


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``extreme``: one clip of finite samples near 1e30 (its loss overflows); ``nan``: one NaN sample."""
    root = tmp_path_factory.mktemp("faulty-audio")
    extreme = (np.random.default_rng(0).standard_normal(SAMPLE_RATE) * 1e30).astype(np.float32)
    with_nan = extreme / 1e30
    with_nan[100] = np.nan
    return {"extreme": _with_clip(root, "extreme", extreme), "nan": _with_clip(root, "nan", with_nan)}


def _ckpt(out: Path, steps: int) -> dict:
    """The checkpoint written after ``steps`` optimiser steps."""
    return torch.load(out / "checkpoints" / f"step{steps:08d}.ckpt", map_location="cpu", weights_only=True)


def _same(a: dict, b: dict) -> bool:
    """Weights and optimiser state bit-identical."""
    if a["state_dict"].keys() != b["state_dict"].keys():
        return False
    weights = all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    sa, sb = a["optimizer_states"][0]["state"], b["optimizer_states"][0]["state"]
    return weights and sa.keys() == sb.keys() and all(torch.equal(sa[i][k], sb[i][k]) for i in sa for k in sa[i])


def _all_finite(out: Path) -> None:
    files = sorted((out / "checkpoints").glob("*.ckpt"))
    assert files
    for path in files:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        tensors = [*ckpt["state_dict"].values(), *(t for s in ckpt["optimizer_states"][0]["state"].values() for t in s.values())]
        assert all(bool(torch.isfinite(t).all()) for t in tensors), path
    for path in out.glob("student*/model.safetensors"):
        assert all(bool(torch.isfinite(t).all()) for t in load_file(str(path)).values()), path


PRECISIONS = ("32-true", "16-mixed")


def _extreme(data: dict[str, Path], precision: str) -> list[str]:
    """Overrides of a run whose data holds the extreme clip, with accumulation and clipping."""
    return [*FAULT_RUN, f"data.train={data['extreme']}", f"trainer.max_steps={STEPS}", f"trainer.precision={precision}",
            "trainer.gradient_clip_val=1.0"]


@pytest.fixture(scope="module")
def extreme_runs(distill_work, data) -> dict[str, Path]:
    """precision -> the extreme-clip run (16-mixed: fp16 AMP with a GradScaler)."""
    runs = {}
    for precision in PRECISIONS:
        runs[precision] = data["extreme"].parent / f"run-{precision}"
        run_distillation(load_config(TINY_RECIPE, overrides(distill_work, runs[precision], *_extreme(data, precision))))
    return runs


@pytest.mark.parametrize("precision", PRECISIONS)
def test_faulty_steps_leave_weights_and_optimiser_state_bit_identical(extreme_runs, precision) -> None:
    run = extreme_runs[precision]
    losses = logged(run, "train/loss")
    assert sorted(losses) == list(range(STEPS))
    faulty = [s for s, v in losses.items() if not math.isfinite(v)]
    assert faulty and faulty[0] >= 1 and len(faulty) < STEPS, losses
    skipped = logged(run, "train/skipped_steps")
    assert [skipped[s] for s in range(STEPS)] == [sum(f <= s for f in faulty) for s in range(STEPS)]
    for step in range(1, STEPS):
        unchanged = _same(_ckpt(run, step), _ckpt(run, step + 1))
        assert unchanged == (step in faulty), step
    _all_finite(run)
    student = load_file(str(run / "student" / "model.safetensors"))
    last = _ckpt(run, STEPS)["state_dict"]
    assert all(torch.equal(v, last[f"student.{k}"]) for k, v in student.items())


def test_lr_1e6_stops_after_consecutive_skips_with_one_line(distill_work, tmp_path, capsys, caplog) -> None:
    out = tmp_path / "diverged"
    argv = ["distill", "--config", str(TINY_RECIPE), *overrides(distill_work, out, *FAULT_RUN), "trainer.max_steps=40",
            "optim.lr=1e6", "trainer.max_consecutive_skips=3"]
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    skips = [r.getMessage() for r in caplog.records if r.name == "armdistill.distill.guard"]
    assert len(skips) == 3 and all("optimiser step skipped" in m for m in skips), skips
    assert skips[-1].endswith("(3 skipped so far, 3 in a row)") and sum("error:" in line for line in lines) == 1, lines
    error = lines[-1]
    stop = int(error.split("error: step ")[1].split(":")[0])
    assert error.startswith("armdistill distill: error: step ") and "3 optimiser steps in a row" in error, error
    assert "optim.lr=1e+06 too high" in error and "trainer.max_consecutive_skips=3" in error, error
    # steps stop-2 .. stop were skipped: the checkpoints after them hold the weights of the last real update
    newest = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert newest["global_step"] == stop
    for steps in range(stop - 2, stop + 1):
        assert _same(_ckpt(out, steps), _ckpt(out, stop - 2))
    assert not _same(_ckpt(out, stop - 2), _ckpt(out, stop - 3))
    _all_finite(out)
    assert not (out / "student").exists()


def test_nan_audio_is_a_data_error_naming_the_file(distill_work, data, tmp_path, capsys) -> None:
    with pytest.raises(DataError, match=r"odd\.wav: 1 non-finite samples \(NaN or infinity\)"):
        load_audio(data["nan"].parent / "nan" / "odd.wav")
    argv = ["distill", "--config", str(TINY_RECIPE), *overrides(distill_work, tmp_path / "run", *FAULT_RUN),
            f"data.train={data['nan']}", "trainer.max_steps=10"]
    assert main(argv) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("armdistill distill: error: ") and "nan/odd.wav: 1 non-finite samples" in error, error
    assert not (tmp_path / "run" / "student").exists()


def test_non_finite_weights_are_never_written_nor_resumed(extreme_runs, distill_work, data, tmp_path, capsys) -> None:
    run = extreme_runs["32-true"]
    student = Student.from_pretrained(run / "student")
    with torch.no_grad():
        student.heads[0].weight[0, 0] = float("inf")
    with pytest.raises(NonFiniteError, match=r"not written: 1 tensor\(s\) hold NaN or inf values \(heads\.0\.weight\)"):
        student.save_pretrained(tmp_path / "student")
    assert not (tmp_path / "student").exists()

    ckpt = _ckpt(run, STEPS)
    ckpt["state_dict"]["student.heads.0.weight"][0, 0] = float("nan")
    torch.save(ckpt, tmp_path / "nan.ckpt")
    argv = ["distill", "--config", str(TINY_RECIPE), *overrides(distill_work, tmp_path / "run", *_extreme(data, "32-true")),
            f"trainer.max_steps={STEPS + 2}", "--resume", str(tmp_path / "nan.ckpt")]
    assert main(argv) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"{tmp_path / 'nan.ckpt'}: 1 tensors hold NaN or inf values (student.heads.0.weight)" in error, error
    assert not (tmp_path / "run" / "checkpoints").exists() or not any((tmp_path / "run" / "checkpoints").iterdir())

    guard = NonFiniteGuard(load_config(TINY_RECIPE, overrides(distill_work, tmp_path / "run")))
    with pytest.raises(NonFiniteError, match=r"step 3: checkpoint not written: 1 tensors"):
        guard.on_save_checkpoint(SimpleNamespace(global_step=3), None, {"state_dict": ckpt["state_dict"]})


def test_an_update_that_makes_weights_infinite_stops_before_they_are_saved(distill_work, tmp_path, capsys) -> None:
    """Finite gradients, but a weight decay that multiplies the weights by about -1e57 (step 0 has lr 0)."""
    out = tmp_path / "exploded"
    argv = ["distill", "--config", str(TINY_RECIPE), *overrides(distill_work, out, *FAULT_RUN), "trainer.max_steps=10",
            "optim.weight_decay=1e60"]
    assert main(argv) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "error: step 1: the optimiser update made" in error and "optim.weight_decay=1e+60" in error, error
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["last.ckpt", "step00000001.ckpt"]
    _all_finite(out)
