"""Masking-distillation training on a CPU: the loss falls, DDP equals accumulation, SIGKILL + resume
continues exactly, and checkpoints / exports hold what they should."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from _distill_helpers import REPO, TINY_RECIPE, logged, make_workdir, overrides
from armdistill.distill.config import load_config
from armdistill.distill.train import run_distillation
from armdistill.models.student import Student
from armdistill.teachers import Teacher

STEPS = 12
# 16 clips of 1-2 s, 2 per micro-batch -> 8 micro-batches per epoch, 2 per optimiser step: epochs end at steps 4, 8, 12
RUN = ["data.micro_batch_seconds=4.0", "data.effective_batch_seconds=8.0", "data.num_buckets=2", "data.max_batch_size=2",
       "trainer.deterministic=true", "optim.lr=5.0e-3"]
REFERENCE = [*RUN, f"trainer.max_steps={STEPS}", "trainer.checkpoint_every_steps=1", "trainer.keep_checkpoints=-1",
             "trainer.val_every_steps=2"]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "armdistill.cli", "distill", "--config", str(TINY_RECIPE), *args]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_workdir(tmp_path_factory.mktemp("distill"))


@pytest.fixture(scope="module")
def reference(work: dict[str, Path]) -> Path:
    """An uninterrupted run of the tiny recipe (checkpoint every step)."""
    out = work["train"].parent / "reference"
    run_distillation(load_config(TINY_RECIPE, overrides(work, out, *REFERENCE)))
    return out


def test_tiny_recipe_loss_falls_and_exports(work: dict[str, Path], reference: Path) -> None:
    losses = logged(reference, "train/loss")
    assert sorted(losses) == list(range(STEPS))
    first, last = sum(losses[s] for s in range(3)) / 3, sum(losses[s] for s in range(STEPS - 3, STEPS)) / 3
    assert last < 0.85 * first, losses
    for term in ("mask_hint", "mask_rec", "unmask_hint", "unmask_rec"):
        assert len(logged(reference, f"train/{term}")) == STEPS
    fractions = logged(reference, "train/mask_fraction")
    assert len(fractions) == STEPS and all(0.1 < f < 0.95 for f in fractions.values()), fractions
    val = logged(reference, "val/loss")
    assert sorted(val) == [1, 3, 5, 7, 9, 11] and val[11] < 0.9 * val[1], val

    student = Student.from_pretrained(reference / "student")
    assert student.config.num_layers == 2 and student.config.proj_dim == 32
    info = json.loads((reference / "student" / "distill.json").read_text())
    assert info["teacher_fingerprint"] == Teacher.from_pretrained(work["teacher"]).fingerprint()
    assert info["global_step"] == STEPS and info["config"]["resolved"]["plan"]["accumulate"] == 2
    assert len(info["git_revision"]) >= 7
    best = torch.load(reference / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    assert best["global_step"] == min(val, key=val.get) + 1  # logged before the step's update, saved after it
    best_ckpt = best["state_dict"]
    for key, value in Student.from_pretrained(reference / "student-best").state_dict().items():
        torch.testing.assert_close(value, best_ckpt[f"student.{key}"], rtol=0, atol=0)


def test_checkpoints_hold_no_teacher_and_load_weights_only(reference: Path) -> None:
    periodic = sorted((reference / "checkpoints").glob("step*.ckpt"))
    assert len(periodic) == STEPS
    ckpt = torch.load(reference / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == STEPS
    assert ckpt["state_dict"] and all(k.startswith("student.") for k in ckpt["state_dict"])
    assert ckpt["armdistill"]["teacher_fingerprint"]
    exported = load_file(str(reference / "student" / "model.safetensors"))
    for key, value in exported.items():
        torch.testing.assert_close(ckpt["state_dict"][f"student.{key}"], value, rtol=0, atol=0)


def test_sigkill_then_resume_continues_exactly(work: dict[str, Path], reference: Path) -> None:
    out = work["train"].parent / "killed"
    proc = subprocess.Popen(cli(*overrides(work, out, *REFERENCE)), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    target = out / "checkpoints" / "step00000006.ckpt"
    deadline = time.monotonic() + 180
    while not target.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    assert target.exists(), err.decode()[-3000:]
    killed_at = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["global_step"]
    # mid-epoch either way (last.ckpt may still hold step 5 when the kill lands)
    assert killed_at in (5, 6) and not (out / "student").exists()

    run_distillation(load_config(TINY_RECIPE, overrides(work, out, *REFERENCE)), resume="last")
    expected, resumed = logged(reference, "train/loss"), logged(out, "train/loss")
    assert sorted(resumed) == list(range(STEPS))
    for step in range(killed_at, STEPS):
        assert resumed[step] == pytest.approx(expected[step], abs=1e-6), step
    assert (out / "student-best" / "model.safetensors").is_file()
    final, reference_final = Student.from_pretrained(out / "student"), Student.from_pretrained(reference / "student")
    for key, value in final.state_dict().items():
        torch.testing.assert_close(value, reference_final.state_dict()[key], rtol=0, atol=1e-6)


def test_two_ddp_ranks_equal_one_process_accumulating(work: dict[str, Path]) -> None:
    steps = ["trainer.max_steps=4", "trainer.checkpoint_every_steps=100", "data.valid=null"]
    ddp_out, single_out = work["train"].parent / "ddp", work["train"].parent / "single"
    ddp = subprocess.run(
        cli(*overrides(work, ddp_out, *RUN, *steps, "trainer.devices=2", "trainer.accelerator=cpu")),
        cwd=REPO, capture_output=True, timeout=300,
    )
    assert ddp.returncode == 0, ddp.stderr.decode()[-3000:]
    run_distillation(load_config(TINY_RECIPE, overrides(work, single_out, *RUN, *steps)))
    ddp_info = json.loads((ddp_out / "student" / "distill.json").read_text())
    single_info = json.loads((single_out / "student" / "distill.json").read_text())
    assert ddp_info["config"]["resolved"]["plan"]["accumulate"] == 1
    assert single_info["config"]["resolved"]["plan"]["accumulate"] == 2
    a, b = load_file(str(ddp_out / "student" / "model.safetensors")), load_file(str(single_out / "student" / "model.safetensors"))
    torch.manual_seed(0)  # the recipe's seed: the weights both runs started from
    initial = Student(load_config(TINY_RECIPE, overrides(work, single_out, *RUN)).student_config()).state_dict()
    assert a.keys() == b.keys() == initial.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-5)
    assert max(float((b[k] - initial[k]).abs().max()) for k in b) > 1e-3
