"""``loss.target_norm``: each mode against a hand computation, ``none`` bit for bit today's loss,
and ``auto`` resolved by the teacher's layout (post-LN -> none, pre-LN -> layer)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from _distill_helpers import TINY_RECIPE, make_workdir, overrides
from armdistill.cli import main
from armdistill.distill.config import load_config, plan, resolve_proj_dim
from armdistill.distill.losses import (
    TARGET_NORM_EPS,
    layer_distillation_loss,
    masking_distillation_loss,
    normalize_targets,
)
from armdistill.distill.module import DistillModule
from armdistill.models.student import Student
from armdistill.teachers import Teacher, make_random_model, make_random_teacher


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = make_workdir(tmp_path_factory.mktemp("target_norm"))
    work["pre_ln_teacher"] = make_random_teacher(work["teacher"].parent / "pre_ln", seed=4, do_stable_layer_norm=True)
    return work


def padded_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Two utterances of 1.5 s and 1.1 s, the shorter zero-padded."""
    wav = 0.3 * torch.randn(2, 24000, generator=torch.Generator().manual_seed(0))
    wav[1, 17600:] = 0.0
    return wav, torch.tensor([24000, 17600])


def test_each_mode_equals_a_hand_computation() -> None:
    x = 3.0 + 2.0 * torch.randn(2, 7, 5, generator=torch.Generator().manual_seed(1))  # [batch, frames, dim]
    lengths = torch.tensor([7, 4])
    (none,) = normalize_targets([x], lengths, "none")
    assert none is x
    (layer,) = normalize_targets([x], lengths, "layer")
    for b in range(2):
        for t in range(7):
            frame = x[b, t].double()
            expected = (frame - frame.mean()) / torch.sqrt(frame.var(unbiased=False) + TARGET_NORM_EPS)
            torch.testing.assert_close(layer[b, t].double(), expected, rtol=1e-5, atol=1e-5)
    (instance,) = normalize_targets([x], lengths, "instance")
    for b, n in enumerate(lengths.tolist()):
        valid = x[b, :n].double()  # statistics over the utterance's valid frames only
        expected = (valid - valid.mean(0)) / torch.sqrt(valid.var(0, unbiased=False) + TARGET_NORM_EPS)
        torch.testing.assert_close(instance[b, :n].double(), expected, rtol=1e-5, atol=1e-5)
        assert torch.count_nonzero(instance[b, n:]) == 0
    # padding does not change an utterance's targets
    (alone,) = normalize_targets([x[1:, :4]], None, "instance")
    torch.testing.assert_close(alone[0], instance[1, :4], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="resolve 'auto'"):
        normalize_targets([x], lengths, "auto")


def masked_frames(frames: int) -> torch.Tensor:
    mask = torch.zeros(2, frames, dtype=torch.bool)
    mask[:, 5:30] = True
    return mask


@pytest.mark.parametrize("mode", ["none", "layer", "instance"])
def test_masked_and_unmasked_targets_are_normalised_alike(work: dict[str, Path], tmp_path: Path, mode: str) -> None:
    cfg = load_config(TINY_RECIPE, overrides(work, tmp_path, f"loss.target_norm={mode}"))
    student = Student(resolve_proj_dim(cfg, 32).student_model).eval()
    teacher = Teacher.from_pretrained(work["teacher"])
    module = DistillModule(student, teacher, cfg, plan(cfg), "fp")
    wav, lengths = padded_batch()
    frames = int(student.frame_lengths(lengths)[0])
    mask = masked_frames(frames)
    torch.manual_seed(5)
    result = module.distillation_loss(wav, lengths, mask)
    torch.manual_seed(5)
    out = student(wav, lengths, mask)
    masked, unmasked = teacher.masked_and_unmasked(wav, lengths, mask)
    if mode == "none":  # today's loss: the raw layer outputs
        targets_m, targets_u = masked.layers, unmasked.layers
    else:
        targets_m, targets_u = (normalize_targets(o.layers, o.lengths, mode) for o in (masked, unmasked))
    expected = masking_distillation_loss(out.projections, targets_m, targets_u, mask, out.padding_mask, cfg.loss)
    torch.testing.assert_close(result.loss, expected.loss, rtol=0, atol=0)
    # validation (no mask) normalises the unmasked targets the same way
    valid = module.distillation_loss(wav, lengths)
    out = student(wav, lengths)
    raw = teacher.layer_outputs(wav, lengths)
    targets = raw.layers if mode == "none" else normalize_targets(raw.layers, raw.lengths, mode)
    expected = layer_distillation_loss(out.projections, targets, out.padding_mask, cfg.loss)
    torch.testing.assert_close(valid.loss, expected.loss, rtol=0, atol=0)


def test_auto_follows_the_teacher_layout(work: dict[str, Path], tmp_path: Path) -> None:
    cfg = load_config(TINY_RECIPE, overrides(work, tmp_path))
    assert cfg.loss.target_norm == "auto"
    post, pre = Teacher.from_pretrained(work["teacher"]), Teacher.from_pretrained(work["pre_ln_teacher"])
    assert (post.pre_ln, pre.pre_ln) == (False, True)
    assert not Teacher(make_random_model("data2vec-audio")).pre_ln
    resolved = {}
    for name, teacher in (("post", post), ("pre", pre)):
        module = DistillModule(Student(resolve_proj_dim(cfg, 32).student_model), teacher, cfg, plan(cfg), "fp")
        resolved[name] = module.cfg.loss.target_norm
    assert resolved == {"post": "none", "pre": "layer"}
    explicit = load_config(TINY_RECIPE, overrides(work, tmp_path, "loss.target_norm=instance"))
    assert DistillModule(Student(resolve_proj_dim(cfg, 32).student_model), pre, explicit, plan(cfg), "fp").cfg.loss.target_norm == "instance"


def test_print_config_shows_auto(work: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["distill", "--config", str(TINY_RECIPE), "--print-config", *overrides(work, tmp_path)]) == 0
    assert "target_norm: auto" in capsys.readouterr().out
    assert main(["distill", "--config", str(TINY_RECIPE), "--print-config", "loss.target_norm=batch"]) == 2
