"""``speed.compile`` parity: compiled student and teacher against eager ones, on one device.

A tiny student (2 layers, one reusing) and a tiny random teacher, dropout off, a padded batch
with a span mask: the student's head outputs and every parameter gradient of one masking-loss
backward pass, and every teacher layer output, compiled vs eager. Prints the largest absolute
differences as JSON; exits 1 when one exceeds ``--atol``.

    python benchmarks/compile_parity.py [--device cuda] [--backend inductor] [--atol 1e-4]

Inductor on a CPU takes minutes to compile even this model; the test suite runs this check
with ``--backend aot_eager`` (graph capture and autograd, not code generation).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import torch

from armdistill.distill.losses import LossConfig, masking_distillation_loss
from armdistill.distill.speed import compile_models
from armdistill.models.student import Student
from armdistill.teachers import Teacher, make_random_model

NO_DROPOUT = dict(dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, feature_dropout=0.0)


def _step(student: Student, teacher: Teacher, wav: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor):
    """(head outputs, parameter gradients, teacher layer outputs) of one masking-loss step."""
    masked, unmasked = teacher.masked_and_unmasked(wav, lengths, mask)
    out = student(wav, lengths, mask)
    loss = masking_distillation_loss(out.projections, masked.layers, unmasked.layers, mask, out.padding_mask, LossConfig())
    loss.loss.backward()
    grads = [p.grad.detach().clone() for p in student.parameters() if p.grad is not None]
    student.zero_grad(set_to_none=True)
    return [p.detach() for p in out.projections], grads, list(masked.hidden_states + unmasked.hidden_states)


def compile_parity(device: str = "cpu", backend: str = "inductor", kind: str = "hubert") -> dict[str, float]:
    """Largest absolute differences, compiled minus eager: ``outputs``, ``grads``, ``teacher``."""
    torch.manual_seed(0)
    student = Student.from_preset(
        "tiny-arm", num_layers=2, reuse_pattern=[True, False], proj_dim=32, **NO_DROPOUT
    ).to(device).train()
    teacher = Teacher(make_random_model(kind, seed=1)).to(device)
    generator = torch.Generator().manual_seed(2)
    wav = torch.randn(2, 8000, generator=generator).to(device)
    lengths = torch.tensor([8000, 5600], device=device)
    mask = torch.zeros(2, 24, dtype=torch.bool, device=device)
    mask[:, 4:12] = True
    eager = _step(student, teacher, wav, lengths, mask)
    names = sorted(student.state_dict())
    compile_models(student, teacher, backend=backend)
    if sorted(student.state_dict()) != names:
        raise AssertionError("compiling renamed the student's parameters")
    compiled = _step(student, teacher, wav, lengths, mask)
    return {
        name: max((a - b).abs().max().item() for a, b in zip(x, y, strict=True))
        for name, x, y in zip(("outputs", "grads", "teacher"), eager, compiled)
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backend", default="inductor")
    parser.add_argument("--teacher", choices=["hubert", "wavlm"], default="hubert")
    parser.add_argument("--atol", type=float, default=1e-4)
    args = parser.parse_args(argv)
    diffs = compile_parity(args.device, args.backend, args.teacher)
    ok = all(d <= args.atol for d in diffs.values())
    print(json.dumps({"device": args.device, "backend": args.backend, "teacher": args.teacher, "torch": torch.__version__,
                      "max_abs_diff": diffs, "atol": args.atol, "ok": ok}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
