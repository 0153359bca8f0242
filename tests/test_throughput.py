"""Training fast paths equal the plain path; WavLM's SDPA attention equals transformers'; the
distillation-step benchmark runs and reports what it promises."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from _transformers_parity import assert_matches_transformers

from armdistill.config import ConfigError, from_dict
from armdistill.distill.config import DistillConfig, load_config, plan
from armdistill.distill.module import DistillModule
from armdistill.distill.speed import pad_to_multiple, resolve_reuse_kernel
from armdistill.models.student import Student
from armdistill.teachers import Teacher, make_random_model
from armdistill.teachers.attention import WavLMSdpaAttention

REPO = Path(__file__).resolve().parents[1]
NO_DROPOUT = {"dropout": 0.0, "attention_dropout": 0.0, "activation_dropout": 0.0, "feature_dropout": 0.0}
LENGTHS = torch.tensor([9600, 7000, 4100])


def _load_script(name: str) -> ModuleType:
    """A benchmark script as a module (its directory on the path, as when it runs)."""
    if str(REPO / "benchmarks") not in sys.path:
        sys.path.insert(0, str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve their annotations through it
    spec.loader.exec_module(module)
    return module


def _wav(batch: int, samples: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, samples, generator=torch.Generator().manual_seed(seed))


def _padded_wav() -> torch.Tensor:
    wav = _wav(3, int(LENGTHS.max()))
    for row, n in enumerate(LENGTHS.tolist()):
        wav[row, n:] = 0.0
    return wav


def _max_diff(a, b) -> float:
    a, b = list(a), list(b)
    assert len(a) == len(b)
    return max((x - y).abs().max().item() for x, y in zip(a, b))


# -- student reuse kernels ---------------------------------------------------------------

def test_reuse_kernels_give_equal_outputs_and_gradients() -> None:
    torch.manual_seed(0)
    student = Student.from_preset("tiny-arm", **NO_DROPOUT).train()
    wav, mask = _padded_wav(), torch.zeros(3, 29, dtype=torch.bool)
    mask[:, 3:13] = True
    results = {}
    for kernel in ("sdpa", "stored"):
        out = student(wav, LENGTHS, mask, kernel=kernel)
        valid = ~out.padding_mask[..., None]
        sum(((p * valid) ** 2).mean() for p in out.projections).backward()
        results[kernel] = ([p.detach() * valid for p in out.projections], [p.grad.clone() for p in student.parameters()])
        student.zero_grad(set_to_none=True)
    assert _max_diff(results["sdpa"][0], results["stored"][0]) < 1e-5
    assert _max_diff(results["sdpa"][1], results["stored"][1]) < 1e-5
    with pytest.raises(ValueError, match="kernel"):
        student(wav, LENGTHS, kernel="flash")


class _ShapeRecorder(TorchDispatchMode):
    """Records the shape of every tensor an aten op returns."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.shapes.append(tuple(t.shape))
        return out


@pytest.mark.parametrize("mode, materialised", [("paper", False), ("explicit", True)])
def test_paper_inference_materialises_no_attention_map(mode: str, materialised: bool) -> None:
    student = Student.from_preset("tiny-arm", reuse_mode=mode).eval()
    wav = _padded_wav()
    frames = int(student.frame_lengths(LENGTHS).max())
    recorder = _ShapeRecorder()
    with torch.no_grad(), recorder:
        student(wav, LENGTHS)
    has_map = any(len(s) >= 2 and s[-2:] == (frames, frames) for s in recorder.shapes)
    assert has_map is materialised


def test_auto_kernel_per_device() -> None:
    assert resolve_reuse_kernel("auto", torch.device("cuda")) == "stored"
    assert resolve_reuse_kernel("auto", torch.device("cpu")) == "sdpa"
    assert resolve_reuse_kernel("sdpa", torch.device("cuda")) == "sdpa"


# -- the training step with each switch ----------------------------------------------------

TEACHER = make_random_model("hubert", seed=3)
SMALL_STUDENT = {"preset": "tiny-arm", "num_layers": 2, "reuse_pattern": [True, False], "proj_dim": 32, **NO_DROPOUT}
PLAIN = {"teacher": {"batch_masked": False, "share_front_end": False, "sdpa": False},
         "speed": {"reuse_kernel": "sdpa", "compile": False, "pad_to_seconds": None}}


def _step(settings: dict) -> tuple[float, list[torch.Tensor], torch.Tensor]:
    """(loss, student gradients, mask) of one masking-distillation micro-batch."""
    cfg = from_dict(DistillConfig, {"student": SMALL_STUDENT, **settings})
    t = cfg.teacher
    teacher = Teacher(TEACHER, False, t.batch_masked, t.share_front_end, t.sdpa)
    torch.manual_seed(0)
    module = DistillModule(Student(cfg.student_model), teacher, cfg, plan(cfg), "test").train()
    result, mask = module.step_loss(_padded_wav(), LENGTHS, np.random.default_rng(7))
    result.loss.backward()
    return result.loss.item(), [p.grad.clone() for p in module.student.parameters()], mask


@pytest.mark.parametrize("section, key, value", [
    ("speed", "reuse_kernel", "stored"),
    ("speed", "pad_to_seconds", 0.25),
    ("teacher", "sdpa", True),
    ("teacher", "share_front_end", True),
    ("teacher", "batch_masked", True),
])
def test_each_fast_path_equals_the_plain_step(section: str, key: str, value: object) -> None:
    plain_loss, plain_grads, plain_mask = _step(PLAIN)
    fast = {name: dict(entries) for name, entries in PLAIN.items()}
    fast[section][key] = value
    loss, grads, mask = _step(fast)
    assert torch.equal(mask[:, : plain_mask.shape[1]], plain_mask) and not mask[:, plain_mask.shape[1]:].any()
    assert loss == pytest.approx(plain_loss, rel=1e-5)
    assert _max_diff(grads, plain_grads) < 1e-5


def test_pad_to_multiple() -> None:
    wav = torch.ones(2, 10)
    assert pad_to_multiple(wav, 4).shape == (2, 12) and pad_to_multiple(wav, 4)[:, 10:].abs().sum() == 0
    assert pad_to_multiple(wav, 5) is wav


def test_speed_keys_are_checked_and_named(tmp_path: Path) -> None:
    cfg = load_config(REPO / "configs" / "tiny.yaml", ["speed.reuse_kernel=stored", "speed.pad_to_seconds=1.0"])
    assert (cfg.speed.reuse_kernel, cfg.speed.compile, cfg.speed.pad_to_seconds) == ("stored", False, 1.0)
    assert (cfg.teacher.sdpa, cfg.teacher.share_front_end) == (True, True)
    for override, key in (("speed.reuse_kernel=flash", "speed.reuse_kernel"), ("speed.pad_to_seconds=0", "speed.pad_to_seconds"),
                          ("speed.fused=true", "speed.fused"), ("teacher.sdpa=maybe", "teacher.sdpa")):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load_config(REPO / "configs" / "tiny.yaml", [override])


def test_compile_keeps_outputs_gradients_and_names() -> None:
    # inductor's code generation takes minutes on a CPU; benchmarks/gpu_checks.sh runs it on a GPU
    diffs = _load_script("compile_parity").compile_parity("cpu", backend="aot_eager")
    assert diffs["outputs"] < 1e-5 and diffs["grads"] < 1e-5 and diffs["teacher"] < 1e-5


# -- WavLM through SDPA --------------------------------------------------------------------

@pytest.fixture(scope="module", params=[False, True], ids=["postln", "preln"])
def wavlm(request):
    extra = {"do_stable_layer_norm": True, "feat_extract_norm": "layer"} if request.param else {}
    return make_random_model("wavlm", seed=5, **extra)


def test_wavlm_sdpa_teacher_equals_transformers(wavlm) -> None:
    teacher = Teacher(wavlm, sdpa=True)
    attention = [layer.attention for layer in wavlm.encoder.layers]
    assert all(type(a) is WavLMSdpaAttention for a in attention)
    wav = _padded_wav()
    with torch.no_grad():
        whole = wavlm(wav, output_hidden_states=True).hidden_states
    # unpadded: the whole batch as transformers' eager WavLM gives it
    Teacher(wavlm, sdpa=False)
    assert all(type(layer.attention) is not WavLMSdpaAttention for layer in wavlm.encoder.layers)
    with torch.no_grad():
        eager = wavlm(wav, output_hidden_states=True)
    Teacher(wavlm, sdpa=True)
    assert _max_diff(whole, eager.hidden_states) < 1e-4
    assert_matches_transformers(teacher.layer_outputs(wav).hidden_states, eager, wavlm, atol=1e-4)
    # padded: each row as transformers gives the utterance alone
    out = teacher.layer_outputs(wav, LENGTHS)
    Teacher(wavlm, sdpa=False)
    for row, n in enumerate(LENGTHS.tolist()):
        with torch.no_grad():
            alone = wavlm(wav[row : row + 1, :n], output_hidden_states=True)
        frames = alone.hidden_states[0].shape[1]
        assert_matches_transformers([h[row : row + 1, :frames] for h in out.hidden_states], alone, wavlm, atol=1e-4)


def test_wavlm_kernel_switch_keeps_weights_and_fingerprint() -> None:
    model = make_random_model("wavlm", seed=6)
    keys = sorted(model.state_dict())
    eager = Teacher(model, sdpa=False).fingerprint()
    assert Teacher(model, sdpa=True).fingerprint() == eager and sorted(model.state_dict()) == keys


# -- the benchmark -------------------------------------------------------------------------

def test_distill_step_benchmark_reports_both_designs(tmp_path: Path) -> None:
    out = tmp_path / "distill_step.json"
    bench = _load_script("distill_step")
    bench.main(["--device", "cpu", "--utterances", "4", "--batch", "2", "--max-seconds", "1.0", "--warmup", "1", "--passes", "1",
                "--variants", "release_style", "ours", "ours_two_teacher_passes", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["device"].startswith("cpu") and report["torch"] == torch.__version__
    assert report["settings"]["utterances"] == 4 and report["settings"]["release_batch"] == 2
    results = report["results"]
    assert list(results) == ["release_style", "ours", "ours_two_teacher_passes"]
    seconds = sum(bench.librispeech_like_seconds(4, 1.0, 0))
    for entry in results.values():
        assert entry["audio_s_per_s"] > 0 and entry["peak_gib"] > 0
        assert 0.0 <= entry["padding_fraction"] < 1.0
        assert entry["valid_audio_seconds"] == pytest.approx(seconds, abs=0.01)
    assert results["release_style"]["batches"] == 2
    assert results["release_style"]["settings"]["reuse_mode"] == "release"
    assert results["ours"]["settings"]["batching"] == "dynamic" and results["ours"]["reuse_kernel"] == "sdpa"
    assert results["ours"]["padding_fraction"] <= results["release_style"]["padding_fraction"]
