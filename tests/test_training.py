"""Masking-distillation training on a CPU: the loss falls, DDP equals accumulation, and checkpoints /
exports hold what they should (kills and resume: test_resume.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import torch
from safetensors.torch import load_file

from _distill_helpers import REPO, RUN, STEPS, TINY_RECIPE, cli, logged, overrides
from armdistill.distill.config import load_config, resolve_proj_dim
from armdistill.distill.train import run_distillation
from armdistill.models.student import Student
from armdistill.teachers import Teacher


def test_tiny_recipe_loss_falls_and_exports(distill_work: dict[str, Path], distill_reference: Path) -> None:
    losses = logged(distill_reference, "train/loss")
    assert sorted(losses) == list(range(STEPS))
    first, last = sum(losses[s] for s in range(3)) / 3, sum(losses[s] for s in range(STEPS - 3, STEPS)) / 3
    assert last < 0.85 * first, losses
    for term in ("mask_hint", "mask_rec", "unmask_hint", "unmask_rec"):
        assert len(logged(distill_reference, f"train/{term}")) == STEPS
    fractions = logged(distill_reference, "train/mask_fraction")
    assert len(fractions) == STEPS and all(0.1 < f < 0.95 for f in fractions.values()), fractions
    val = logged(distill_reference, "val/loss")
    assert sorted(val) == [1, 3, 5, 7, 9, 11] and val[11] < 0.9 * val[1], val

    student = Student.from_pretrained(distill_reference / "student")
    assert student.config.num_layers == 2 and student.config.proj_dim == 32
    info = json.loads((distill_reference / "student" / "distill.json").read_text())
    assert info["teacher_fingerprint"] == Teacher.from_pretrained(distill_work["teacher"]).fingerprint()
    assert info["global_step"] == STEPS and info["config"]["resolved"]["plan"]["accumulate"] == 2
    assert len(info["git_revision"]) >= 7
    best = torch.load(distill_reference / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    assert best["global_step"] == min(val, key=val.get) + 1  # logged before the step's update, saved after it
    best_ckpt = best["state_dict"]
    for key, value in Student.from_pretrained(distill_reference / "student-best").state_dict().items():
        torch.testing.assert_close(value, best_ckpt[f"student.{key}"], rtol=0, atol=0)


def test_checkpoints_hold_no_teacher_and_load_weights_only(distill_reference: Path) -> None:
    periodic = sorted((distill_reference / "checkpoints").glob("step*.ckpt"))
    assert len(periodic) == STEPS
    ckpt = torch.load(distill_reference / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == STEPS
    assert ckpt["state_dict"] and all(k.startswith("student.") for k in ckpt["state_dict"])
    assert ckpt["armdistill"]["teacher_fingerprint"]
    exported = load_file(str(distill_reference / "student" / "model.safetensors"))
    for key, value in exported.items():
        torch.testing.assert_close(ckpt["state_dict"][f"student.{key}"], value, rtol=0, atol=0)


def test_two_ddp_ranks_equal_one_process_accumulating(distill_work: dict[str, Path]) -> None:
    steps = ["trainer.max_steps=4", "trainer.checkpoint_every_steps=100", "data.valid=null"]
    ddp_out, single_out = distill_work["train"].parent / "ddp", distill_work["train"].parent / "single"
    ddp = subprocess.run(
        cli(*overrides(distill_work, ddp_out, *RUN, *steps, "trainer.devices=2", "trainer.accelerator=cpu")),
        cwd=REPO, capture_output=True, timeout=300,
    )
    assert ddp.returncode == 0, ddp.stderr.decode()[-3000:]
    run_distillation(load_config(TINY_RECIPE, overrides(distill_work, single_out, *RUN, *steps)))
    ddp_info = json.loads((ddp_out / "student" / "distill.json").read_text())
    single_info = json.loads((single_out / "student" / "distill.json").read_text())
    assert ddp_info["config"]["resolved"]["plan"]["accumulate"] == 1
    assert single_info["config"]["resolved"]["plan"]["accumulate"] == 2
    a, b = load_file(str(ddp_out / "student" / "model.safetensors")), load_file(str(single_out / "student" / "model.safetensors"))
    torch.manual_seed(0)  # the recipe's seed: the weights both runs started from
    initial = Student(resolve_proj_dim(load_config(TINY_RECIPE, overrides(distill_work, single_out, *RUN)), 32).student_model).state_dict()
    assert a.keys() == b.keys() == initial.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-5)
    assert max(float((b[k] - initial[k]).abs().max()) for k in b) > 1e-3
