"""Training objectives beyond masking distillation: plain layer-to-layer distillation runs the
teacher once, unmasked, and DistilHuBERT's objective trains a student initialised from the teacher."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from _distill_helpers import REPO, TINY_RECIPE, logged, make_workdir, overrides
from armdistill.cli import main
from armdistill.config import ConfigError
from armdistill.distill.config import DistillConfig, LossSection, load_config, plan, resolve_proj_dim
from armdistill.distill.losses import layer_distillation_loss
from armdistill.distill.module import DistillModule
from armdistill.distill.train import initialise_from_teacher, run_distillation
from armdistill.models.student import Student
from armdistill.teachers import Teacher, make_random_teacher

# 16 clips of 1-2 s, 2 per micro-batch, 2 micro-batches per optimiser step
RUN = ["data.micro_batch_seconds=4.0", "data.effective_batch_seconds=8.0", "data.num_buckets=2", "data.max_batch_size=2",
       "optim.lr=5.0e-3", "trainer.checkpoint_every_steps=100"]
# DistilHuBERT's shape cut down to the tiny teacher (2 layers, width 32): one layer of the teacher's
# width and layout, two heads on it learning teacher layers 0 and 1
DISTILHUBERT = [
    "student.preset=distilhubert",
    "student.conv_layers=[[32,10,5],[32,3,2],[32,3,2],[32,3,2],[32,3,2],[32,2,2],[32,2,2]]",
    "student.dim=32", "student.ffn_dim=64", "student.num_heads=2", "student.num_layers=1", "student.reuse_pattern=[true]",
    "student.pos_conv_kernel=16", "student.pos_conv_groups=4", "student.proj_dim=32", "student.head_inputs=[0,0]",
    "student.init_from_teacher=true", "loss.objective=distilhubert", "loss.layer_map=[0,1]",
]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_workdir(tmp_path_factory.mktemp("objectives"))


def padded_batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two utterances of 1.5 s and 1.1 s, the shorter zero-padded: ``[2, samples]``, ``[2]``."""
    generator = torch.Generator().manual_seed(seed)
    wav = 0.3 * torch.randn(2, 24000, generator=generator)
    lengths = torch.tensor([24000, 17600])
    wav[1, 17600:] = 0.0
    return wav, lengths


def test_layer_objective_equals_layer_distillation_loss(work: dict[str, Path], tmp_path: Path) -> None:
    cfg = load_config(TINY_RECIPE, overrides(work, tmp_path, "loss.objective=layer"))
    student = Student(resolve_proj_dim(cfg, 32).student_model).eval()
    teacher = Teacher.from_pretrained(work["teacher"])
    module = DistillModule(student, teacher, cfg, plan(cfg), "fp")
    wav, lengths = padded_batch(0)
    result = module.distillation_loss(wav, lengths)
    out = student(wav, lengths)
    expected = layer_distillation_loss(out.projections, teacher.layer_outputs(wav, lengths).layers, out.padding_mask, cfg.loss)
    assert out.padding_mask.any()  # the padded frames are excluded alike
    torch.testing.assert_close(result.loss, expected.loss, rtol=0, atol=0)
    assert result.terms.keys() == {"hint", "rec"}
    # the masking objective on the same batch without a mask is its validation loss; with one it differs
    masking = DistillModule(student, teacher, load_config(TINY_RECIPE, overrides(work, tmp_path)), plan(cfg), "fp")
    torch.testing.assert_close(masking.distillation_loss(wav, lengths).loss, expected.loss, rtol=0, atol=0)
    mask = torch.zeros(out.padding_mask.shape, dtype=torch.bool)
    mask[:, 5:30] = True
    assert float(masking.distillation_loss(wav, lengths, mask).loss) != pytest.approx(float(expected.loss), rel=1e-3)
    with pytest.raises(ValueError, match="loss.objective='layer' takes no mask"):
        module.distillation_loss(wav, lengths, mask)


def optimised(module: DistillModule) -> set[int]:
    return {id(p) for group in module.configure_optimizers()["optimizer"].param_groups for p in group["params"]}


def test_unmasked_objectives_leave_the_mask_embedding_out_and_train_under_ddp(work: dict[str, Path], tmp_path: Path) -> None:
    teacher = Teacher.from_pretrained(work["teacher"])
    for objective, trained in (("layer", False), ("distilhubert", False), ("masking", True)):
        cfg = load_config(TINY_RECIPE, overrides(work, tmp_path, f"loss.objective={objective}"))
        student = Student(resolve_proj_dim(cfg, 32).student_model)
        assert (id(student.mask_embedding) in optimised(DistillModule(student, teacher, cfg, plan(cfg), "fp"))) == trained
    # DDP refuses parameters that get no gradient (find_unused_parameters is off), as the mask embedding would
    steps = [*RUN, "loss.objective=layer", "trainer.max_steps=2", "data.valid=null", "trainer.devices=2",
             "trainer.accelerator=cpu"]
    command = [sys.executable, "-m", "armdistill.cli", "distill", "--config", str(TINY_RECIPE), *overrides(work, tmp_path, *steps)]
    ddp = subprocess.run(command, cwd=REPO, capture_output=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr.decode()[-3000:]
    info = json.loads((tmp_path / "student" / "distill.json").read_text())
    assert info["global_step"] == 2 and info["config"]["resolved"]["plan"]["world_size"] == 2


def test_layer_objective_training_never_runs_the_masked_teacher(
    work: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the teacher ran a masked pass")

    rows = {"teacher": 0, "student": 0}
    initial: dict[str, torch.Tensor] = {}
    encode, forward = Teacher._encode, Student.forward

    def count_teacher(self: Teacher, x: torch.Tensor, pad: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        rows["teacher"] += x.shape[0]
        return encode(self, x, pad)

    def count_student(self: Student, wav: torch.Tensor, *args: object, **kwargs: object) -> object:
        rows["student"] += wav.shape[0]
        if not initial:
            initial.update({k: v.detach().clone() for k, v in self.state_dict().items()})
        return forward(self, wav, *args, **kwargs)

    monkeypatch.setattr(Teacher, "masked_and_unmasked", refuse)
    monkeypatch.setattr(Teacher, "_apply_mask", refuse)
    monkeypatch.setattr(Teacher, "_encode", count_teacher)
    monkeypatch.setattr(Student, "forward", count_student)
    cfg = load_config(TINY_RECIPE, overrides(work, tmp_path, *RUN, "loss.objective=layer", "trainer.max_steps=3",
                                             "data.valid=null"))
    run_distillation(cfg)

    losses = logged(tmp_path, "train/loss")
    assert sorted(losses) == [0, 1, 2] and not logged(tmp_path, "train/mask_fraction")
    assert len(logged(tmp_path, "train/rec")) == 3
    # one unmasked teacher row per student row: no masked copy of the batch
    assert rows["teacher"] == rows["student"] >= 6
    info = json.loads((tmp_path / "student" / "distill.json").read_text())
    assert info["config"]["resolved"]["objective"]["teacher_passes"] == ["unmasked"] and info["teacher_init"] is None
    # the mask embedding is never read without masks, so it stays as initialised; the rest trains
    trained = load_file(str(tmp_path / "student" / "model.safetensors"))
    torch.testing.assert_close(trained["mask_embedding"], initial["mask_embedding"], rtol=0, atol=0)
    assert float((trained["heads.1.weight"] - initial["heads.1.weight"]).abs().max()) > 1e-3


def test_distilhubert_initialises_from_teacher_and_learns(work: dict[str, Path], tmp_path: Path) -> None:
    cfg = load_config(TINY_RECIPE, overrides(work, tmp_path, *RUN, *DISTILHUBERT, "trainer.max_steps=8",
                                             "trainer.val_every_steps=8"))
    teacher = Teacher.from_pretrained(work["teacher"])
    student = Student(resolve_proj_dim(cfg, 32).student_model)
    copied = initialise_from_teacher(student, teacher)
    teacher_state, own = teacher.model.state_dict(), student.state_dict()
    assert "encoder.layers.0.attention.q_proj.weight" in copied and "feature_extractor.conv_layers.6.conv.weight" in copied
    assert not any(name.startswith(("heads.", "encoder.layers.1.")) for name in copied)
    for name in copied:
        source = teacher_state["masked_spec_embed" if name == "mask_embedding" else name]
        torch.testing.assert_close(own[name], source, rtol=0, atol=0)

    run_distillation(cfg)
    losses = logged(tmp_path, "train/loss")
    assert sorted(losses) == list(range(8))
    first, last = sum(losses[s] for s in range(3)) / 3, sum(losses[s] for s in range(5, 8)) / 3
    assert last < 0.9 * first, losses
    for term in ("l1_0", "cos_0", "l1_1", "cos_1"):
        assert len(logged(tmp_path, f"train/{term}")) == 8 and len(logged(tmp_path, f"val/{term}")) == 1
    info = json.loads((tmp_path / "student" / "distill.json").read_text())
    assert info["teacher_init"] == {"count": len(copied), "tensors": copied}
    best = json.loads((tmp_path / "student-best" / "distill.json").read_text())
    assert best["teacher_init"] == info["teacher_init"]
    # one builder: the best student's record has every section of the last one's, "resolved" included
    assert set(best) == set(info) | {"checkpoint"} and best["config"] == info["config"]
    assert info["config"]["resolved"]["objective"]["head_targets"] == [[0, 0], [0, 1]]


def test_initialising_a_student_unlike_the_teacher_is_an_error(work: dict[str, Path]) -> None:
    cfg = load_config(TINY_RECIPE)  # tiny-arm: 128 wide with 64/128-channel convs, nothing in the teacher's shapes
    with pytest.raises(ConfigError, match="student.init_from_teacher: no teacher tensor matches"):
        initialise_from_teacher(Student(resolve_proj_dim(cfg, 32).student_model), Teacher.from_pretrained(work["teacher"]))


def test_objective_keys_are_checked_and_named(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match=r"loss\.objective: expected one of \['masking', 'layer', 'distilhubert'\], got 'distill'"):
        load_config(TINY_RECIPE, ["loss.objective=distill"])
    assert main(["distill", "--config", str(TINY_RECIPE), "--print-config", "loss.objective=mask"]) == 2
    assert "loss.objective: expected one of ['masking', 'layer', 'distilhubert'], got 'mask'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"objective: expected one of .*, got 'kd'"):
        DistillConfig(loss=LossSection(objective="kd"))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="student.init_from_teacher: expected true/false"):
        load_config(TINY_RECIPE, ["student.init_from_teacher=yes please"])
    with pytest.raises(ConfigError, match="loss.layer_map: 1 teacher layers for the student's 2 projection heads"):
        load_config(TINY_RECIPE, ["loss.layer_map=[1]"])
    with pytest.raises(ConfigError, match="loss.release_compat: applies to the masking and layer objectives only"):
        load_config(TINY_RECIPE, ["loss.objective=distilhubert", "loss.release_compat=true"])
    with pytest.raises(ConfigError, match="loss.cos_weight"):
        load_config(TINY_RECIPE, ["loss.cos_weight=-1.0"])


def test_the_tiny_recipe_takes_a_teacher_of_another_width(work: dict[str, Path], tmp_path: Path) -> None:
    # proj_dim: auto: the 64-wide teacher gives the heads their width, recorded where the run is described
    wide = make_random_teacher(tmp_path / "wide-teacher", seed=4, hidden_size=64, intermediate_size=128)
    out = tmp_path / "run"
    cfg = load_config(TINY_RECIPE, overrides(work, out, f"teacher.path={wide}", "trainer.max_steps=1", "data.valid=null"))
    assert cfg.proj_dim_auto
    run_distillation(cfg)
    info = json.loads((out / "student" / "distill.json").read_text())
    assert info["config"]["student"]["proj_dim"] == info["config"]["resolved"]["student"]["proj_dim"] == 64
    assert yaml.safe_load((out / "config.yaml").read_text())["student"]["proj_dim"] == 64
    assert Student.from_pretrained(out / "student").config.proj_dim == 64
