"""Distillation recipes, config validation, the derived plan and the learning-rate schedule."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

from armdistill.cli import main
from armdistill.config import ConfigError
from armdistill.distill.config import DistillConfig, load_config, plan, resolve_proj_dim, resolved_dict
from armdistill.distill.module import DistillModule, lr_factor
from armdistill.distill.train import check_compatible
from armdistill.models.student import Student
from armdistill.teachers import Teacher, make_random_model

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

# name -> (preset, mask prob, peak lr, optimiser steps, effective batch seconds)
RELEASE = {
    "armhubert-960h": ("armhubert", 0.8, 5e-3, 390_600, 1770.0),
    "armhubert-s-100h": ("armhubert-s", 0.4, 5e-3, 158_533, 443.0),
    "armhubert-s-960h": ("armhubert-s", 0.8, 5e-3, 195_300, 1770.0),
    "armwavlm-s-100h": ("armwavlm-s", 0.4, 5e-3, 158_533, 443.0),
    "armwavlm-s-960h": ("armwavlm-s", 0.8, 5e-3, 195_300, 1770.0),
    "maskhubert-960h": ("maskhubert", 0.8, 5e-4, 390_600, 1770.0),
}


@pytest.mark.parametrize("name", sorted(RELEASE))
def test_release_recipes_hold_the_release_schedule(name: str) -> None:
    preset, prob, lr, steps, seconds = RELEASE[name]
    cfg = load_config(CONFIGS / f"{name}.yaml")
    assert cfg.student["preset"] == preset and cfg.student["reuse_mode"] == "paper"
    assert (cfg.mask.mask_prob, cfg.mask.mask_length, cfg.mask.selection) == (prob, 10, "uniform")
    assert cfg.optim.lr == lr and cfg.optim.betas == (0.9, 0.98) and cfg.optim.eps == 1e-6
    assert cfg.optim.weight_decay == 0.01 and not cfg.optim.decay_biases and cfg.optim.schedule == "linear"
    assert cfg.trainer.max_steps == steps and cfg.trainer.gradient_clip_val is None
    assert cfg.data.effective_batch_seconds == seconds
    assert (cfg.loss.hint_weight, cfg.loss.rec_weight, cfg.loss.release_compat) == (0.1, 1.0, False)
    assert cfg.loss.objective == "masking" and not cfg.init_from_teacher
    assert plan(cfg).warmup_steps == round(0.05 * steps)
    # what the user must fill in is exactly the three paths
    with pytest.raises(ConfigError, match="teacher.path"):
        cfg.check_paths()
    filled = load_config(CONFIGS / f"{name}.yaml", ["teacher.path=t", "data.train=a.tsv", "data.valid=b.tsv"])
    filled.check_paths()


def test_layer_distill_recipe_is_armhubert_without_masking() -> None:
    layer, masking = load_config(CONFIGS / "layer-distill-960h.yaml"), load_config(CONFIGS / "armhubert-960h.yaml")
    assert layer.loss.objective == "layer" and not layer.loss.uses_mask
    for section in ("student", "data", "optim", "trainer", "teacher"):
        assert getattr(layer, section) == getattr(masking, section), section
    assert (layer.loss.kind, layer.loss.hint_weight, layer.loss.rec_weight, layer.loss.layer_map) == ("mse", 0.1, 1.0, None)
    assert resolved_dict(layer)["resolved"]["objective"] == {
        "name": "layer", "teacher_passes": ["unmasked"], "student_input": "unmasked",
        "head_targets": [[k, k] for k in range(12)], "init_from_teacher": False,
    }


def test_distilhubert_recipe_holds_the_published_setup() -> None:
    cfg = load_config(CONFIGS / "distilhubert-960h.yaml")
    assert cfg.student == {"preset": "distilhubert", "init_from_teacher": True}
    student = resolve_proj_dim(cfg, 768).student_model
    assert (student.num_layers, student.dim, student.ffn_dim, student.head_layers) == (2, 768, 3072, [1, 1, 1])
    assert (cfg.loss.objective, cfg.loss.layer_map, cfg.loss.cos_weight) == ("distilhubert", [3, 7, 11], 1.0)
    assert cfg.trainer.max_steps == 200_000 and cfg.optim.lr == 2e-4 and cfg.optim.schedule == "linear"
    assert plan(cfg).warmup_steps == 14_000 and plan(cfg).accumulate == 1
    assert cfg.data.effective_batch_seconds == pytest.approx(24 * 12.3) and cfg.data.max_batch_size == 24
    assert (cfg.data.crop_seconds, cfg.trainer.gradient_clip_val) == (15.625, 5.0)
    with pytest.raises(ConfigError, match="teacher.path"):
        cfg.check_paths()
    load_config(CONFIGS / "distilhubert-960h.yaml", ["teacher.path=t", "data.train=a.tsv", "data.valid=b.tsv"]).check_paths()


def test_print_config_shows_the_objective(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["distill", "--config", str(CONFIGS / "distilhubert-960h.yaml"), "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["loss"]["objective"] == "distilhubert" and printed["student"]["init_from_teacher"] is True
    assert printed["resolved"]["objective"] == {
        "name": "distilhubert", "teacher_passes": ["unmasked"], "student_input": "unmasked",
        "head_targets": [[1, 3], [1, 7], [1, 11]], "init_from_teacher": True,
    }
    assert main(["distill", "--config", str(CONFIGS / "tiny.yaml"), "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    objective = printed["resolved"]["objective"]
    assert objective["name"] == "masking" and objective["teacher_passes"] == ["masked", "unmasked"]
    # loading nothing, the heads' width is still the teacher's, to be read when it loads
    assert printed["student"]["proj_dim"] == printed["resolved"]["student"]["proj_dim"] == "auto"


@pytest.mark.parametrize(
    ("devices", "nodes", "micro", "expected"),
    [(1, 1, 240.0, 8), (2, 1, 240.0, 4), (8, 1, 240.0, 1), (4, 4, 60.0, 2), (2, 1, 110.625, 8), (1, 1, 1770.0, 1)],
)
def test_accumulation_is_computed_from_devices(devices: int, nodes: int, micro: float, expected: int) -> None:
    cfg = load_config(CONFIGS / "armhubert-960h.yaml", [
        f"trainer.devices={devices}", f"trainer.num_nodes={nodes}", f"data.micro_batch_seconds={micro}",
    ])
    p = plan(cfg)
    assert p.accumulate == expected == math.ceil(1770.0 / (devices * nodes * micro) - 1e-9)
    assert p.world_size == devices * nodes
    assert p.step_capacity_seconds >= 1770.0


def test_unknown_and_invalid_keys_name_the_key() -> None:
    recipe = CONFIGS / "tiny.yaml"
    with pytest.raises(ConfigError, match="unknown config key 'trainer.max_step'"):
        load_config(recipe, ["trainer.max_step=3"])
    with pytest.raises(ConfigError, match="unknown config key 'student.dimm'"):
        load_config(recipe, ["student.dimm=3"])
    with pytest.raises(ConfigError, match="student.dim: expected an integer"):
        load_config(recipe, ["student.dim=wide"])
    with pytest.raises(ConfigError, match="student.preset: expected one of"):
        load_config(recipe, ["student.preset=huge"])
    with pytest.raises(ConfigError, match=r"data\.micro_batch_seconds: expected a value > 0, got 0"):
        load_config(recipe, ["data.micro_batch_seconds=0"])
    with pytest.raises(ConfigError, match="optim.schedule"):
        load_config(recipe, ["optim.schedule=step"])
    with pytest.raises(ConfigError, match="optim.warmup_steps"):
        plan(load_config(recipe, ["optim.warmup_steps=60"]))


def test_student_section_overrides_the_preset() -> None:
    cfg = load_config(CONFIGS / "tiny.yaml", ["student.reuse_mode=release", "student.dropout=0.0"])
    student = resolve_proj_dim(cfg, 32).student_model
    assert (student.num_layers, student.proj_dim, student.reuse_pattern) == (2, 32, [True, False])
    assert (student.reuse_mode, student.dropout, student.dim) == ("release", 0.0, 128)


def test_print_config_resolves_without_loading(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["distill", "--config", str(CONFIGS / "armhubert-960h.yaml"), "--print-config",
                 "teacher.path=/nonexistent/teacher.pt", "data.train=/nonexistent/train.tsv", "trainer.devices=2"])
    assert code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["teacher"]["path"] == "/nonexistent/teacher.pt"
    assert printed["resolved"]["plan"] == {
        "world_size": 2, "accumulate": 4, "micro_batch_seconds": 240.0, "effective_batch_seconds": 1770.0,
        "step_capacity_seconds": 1920.0, "max_steps": 390_600, "warmup_steps": 19_530, "schedule": "linear",
        "peak_lr": 5e-3,
    }
    assert printed["resolved"]["student"]["dim"] == 480 and len(printed["resolved"]["student"]["conv_layers"]) == 9
    assert main(["distill", "--config", str(CONFIGS / "tiny.yaml"), "--print-config", "mask.bogus=1"]) == 2


def test_lr_schedule_warms_up_then_decays() -> None:
    linear = [lr_factor(s, warmup=10, total=110, schedule="linear", final=0.0) for s in (0, 5, 10, 60, 110, 200)]
    assert linear == pytest.approx([0.0, 0.5, 1.0, 0.5, 0.0, 0.0])
    cosine = [lr_factor(s, warmup=10, total=110, schedule="cosine", final=0.1) for s in (10, 60, 110)]
    assert cosine == pytest.approx([1.0, 0.55, 0.1])


def test_optimiser_groups_and_scheduler() -> None:
    cfg = load_config(CONFIGS / "tiny.yaml", ["trainer.max_steps=100", "optim.warmup_steps=20", "optim.lr=1.0e-3"])
    student = Student(resolve_proj_dim(cfg, 32).student_model)
    teacher = Teacher(make_random_model(hidden_size=32))
    module = DistillModule(student, teacher, cfg, plan(cfg), "fp")
    setup = module.configure_optimizers()
    decay, no_decay = setup["optimizer"].param_groups
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in no_decay["params"]} == {id(p) for n, p in student.named_parameters() if n.endswith("bias")}
    assert decay["betas"] == (0.9, 0.98) and decay["eps"] == 1e-6
    scheduler = setup["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(60):
        lrs.append(setup["optimizer"].param_groups[0]["lr"])
        setup["optimizer"].step()
        scheduler.step()
    assert lrs[0] == 0.0 and lrs[10] == pytest.approx(5e-4) and lrs[20] == pytest.approx(1e-3)
    assert lrs[40] == pytest.approx(1e-3 * 60 / 80)
    # the module keeps the teacher out of its state: nothing of it reaches a checkpoint
    assert all(k.startswith("student.") for k in module.state_dict())


def test_frame_rate_and_width_are_checked() -> None:
    cfg = load_config(CONFIGS / "tiny.yaml")
    teacher = Teacher(make_random_model(hidden_size=32))
    check_compatible(Student(resolve_proj_dim(cfg, 32).student_model), teacher, cfg)
    slower = DistillConfig(student={"preset": "tiny-arm", "num_layers": 2, "reuse_pattern": [True, False], "proj_dim": 32,
                                    "conv_layers": [[64, 10, 5], [64, 3, 2], [64, 3, 2], [64, 3, 2], [64, 3, 2], [64, 2, 2]]})
    with pytest.raises(ConfigError, match=r"student\.conv_layers: expected the teacher's total stride 320 \(50 Hz frames\), got 160"):
        check_compatible(Student(resolve_proj_dim(slower, 32).student_model), teacher, slower)
    wide = load_config(CONFIGS / "tiny.yaml", ["student.proj_dim=64"])
    with pytest.raises(ConfigError, match=r"student\.proj_dim: expected the teacher's width 32 \(or auto\), got 64"):
        check_compatible(Student(resolve_proj_dim(wide, 32).student_model), teacher, wide)
    deep = load_config(CONFIGS / "tiny.yaml", ["student.num_layers=4", "student.reuse_pattern=[true,false,true,false]"])
    with pytest.raises(ConfigError, match="loss.layer_map"):
        check_compatible(Student(resolve_proj_dim(deep, 32).student_model), teacher, deep)
    # heads, not layers, need teacher layers: four layers with two heads fit a two-layer teacher
    headed = load_config(CONFIGS / "tiny.yaml", ["student.num_layers=4", "student.reuse_pattern=[true,false,true,false]",
                                                 "student.head_inputs=[1,3]"])
    check_compatible(Student(resolve_proj_dim(headed, 32).student_model), teacher, headed)
    beyond = load_config(CONFIGS / "tiny.yaml", ["loss.layer_map=[0,2]"])
    with pytest.raises(ConfigError, match=r"loss\.layer_map: expected one of the teacher's 2 layers .*, got \[0, 2\]"):
        check_compatible(Student(resolve_proj_dim(beyond, 32).student_model), teacher, beyond)
    torch.testing.assert_close(teacher.frame_lengths(torch.tensor([16000])), torch.tensor([49]))
