"""Import of released checkpoints, checked against an independent loop-by-loop implementation
of the release's maths (plain GroupNorm, double softmax, heads/batch reinterpretation)."""

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from armdistill.cli import main
from armdistill.io.safe_pickle import UnsafeCheckpointError
from armdistill.models.release import import_release
from armdistill.models.student import Student

KEYS = json.loads((Path(__file__).parent / "data" / "release-student-keys.json").read_text())
STRIDES = [5, 1, 2, 2, 2, 2, 1, 2, 2]


def _random_release_state(preset: str, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in KEYS[preset].items():
        if key.endswith("weight_g"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        elif "norm" in key or key.endswith("0.2.weight") or key.endswith("0.2.bias"):
            state[key] = 1.0 + 0.1 * torch.randn(shape, generator=g) if key.endswith("weight") else 0.1 * torch.randn(shape, generator=g)
        else:
            state[key] = 0.05 * torch.randn(shape, generator=g)
    return state


def _write_release_ckpt(path: Path, preset: str) -> dict[str, torch.Tensor]:
    """A Lightning .ckpt in the release's layout, with foreign objects pickled inside."""
    state = _random_release_state(preset)
    fake = types.ModuleType("pytorch_lightning.fake_callbacks")

    class ModelCheckpoint:
        def __init__(self):
            self.best_model_path = "/nowhere/best.ckpt"

    ModelCheckpoint.__module__, ModelCheckpoint.__qualname__ = fake.__name__, "ModelCheckpoint"
    fake.ModelCheckpoint = ModelCheckpoint
    sys.modules[fake.__name__] = fake
    try:
        ckpt = {
            "state_dict": {**{"student_model." + k: v for k, v in state.items()},
                           "teacher_model.encoder.layers.0.fc1.weight": torch.zeros(4, 4)},
            "callbacks": {"ModelCheckpoint": ModelCheckpoint()},
            "optimizer_states": [{"state": {}, "param_groups": [{"lr": 5e-3, "betas": (0.9, 0.98)}]}],
            "epoch": 199,
        }
        torch.save(ckpt, path)
    finally:
        del sys.modules[fake.__name__]
    return state


def release_reference(sd, wav, lengths, num_heads=12):
    """Straight transcription of the release's forward pass, one utterance and head at a time."""
    batch = wav.shape[0]
    x, flen = wav[:, None, :], lengths.clone()
    for i, stride in enumerate(STRIDES):
        w = sd[f"feature_extractor.conv_layers.{i}.0.weight"]
        x = F.conv1d(x, w, stride=stride)
        flen = (flen - w.shape[-1]) // stride + 1
        if i == 0:
            x = F.group_norm(x, w.shape[0], sd["feature_extractor.conv_layers.0.2.weight"], sd["feature_extractor.conv_layers.0.2.bias"])
        x = F.gelu(x)
    x = x.transpose(1, 2)
    dim = x.shape[-1]
    x = F.layer_norm(x, (dim,), sd["layer_norm.weight"], sd["layer_norm.bias"])
    frames = x.shape[1]
    pad = torch.arange(frames)[None, :] >= flen[:, None]
    x = x.masked_fill(pad[..., None], 0.0)
    g, v = sd["encoder.pos_conv.0.weight_g"], sd["encoder.pos_conv.0.weight_v"]
    w = v * (g / v.norm(dim=(0, 1), keepdim=True))
    pos = F.conv1d(x.transpose(1, 2), w, sd["encoder.pos_conv.0.bias"], padding=64, groups=16)[:, :, :-1]
    x = x + F.gelu(pos).transpose(1, 2)
    x = F.layer_norm(x, (dim,), sd["encoder.layer_norm.weight"], sd["encoder.layer_norm.bias"])
    hd = dim // num_heads
    lin = lambda t, name: F.linear(t, sd[name + ".weight"], sd[name + ".bias"])
    outputs, stored = [], None
    for i in range(12):
        p = f"encoder.layers.{i}."
        v_all = lin(x, p + "self_attn.v_proj")
        attn = torch.zeros_like(x)
        if p + "self_attn.q_proj.weight" in sd:
            q_all = lin(x, p + "self_attn.q_proj") * hd**-0.5
            k_all = lin(x, p + "self_attn.k_proj")
            stored = [[None] * batch for _ in range(num_heads)]  # heads-major
            for b in range(batch):
                for h in range(num_heads):
                    sl = slice(h * hd, (h + 1) * hd)
                    scores = q_all[b, :, sl] @ k_all[b, :, sl].T
                    scores[:, pad[b]] = float("-inf")
                    probs = scores.softmax(-1)
                    stored[h][b] = probs
                    attn[b, :, sl] = probs @ v_all[b, :, sl]
        else:
            flat = [stored[h][b] for h in range(num_heads) for b in range(batch)]
            for b in range(batch):
                for h in range(num_heads):
                    sl = slice(h * hd, (h + 1) * hd)
                    m = flat[b * num_heads + h].clone()
                    m[:, pad[b]] = float("-inf")
                    attn[b, :, sl] = m.softmax(-1) @ v_all[b, :, sl]
        x = F.layer_norm(x + lin(attn, p + "self_attn.out_proj"), (dim,), sd[p + "self_attn_layer_norm.weight"], sd[p + "self_attn_layer_norm.bias"])
        ff = lin(F.gelu(lin(x, p + "fc1")), p + "fc2")
        x = F.layer_norm(x + ff, (dim,), sd[p + "final_layer_norm.weight"], sd[p + "final_layer_norm.bias"])
        outputs.append(lin(x, f"proj_head.{i}.lin_proj"))
    return outputs, flen


@pytest.fixture(scope="module")
def release_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("release") / "armhubert.ckpt"
    return path, _write_release_ckpt(path, "armhubert")


def test_release_checkpoint_is_refused_by_weights_only_load(release_ckpt):
    with pytest.raises(Exception):
        torch.load(release_ckpt[0], weights_only=True)


def test_imported_student_matches_the_release_maths_on_a_padded_batch(release_ckpt):
    path, state = release_ckpt
    student = import_release(path).eval()
    assert student.reuse_mode == "release" and student.config.dim == 480
    lengths = torch.tensor([16000, 11000, 6400])
    g = torch.Generator().manual_seed(1)
    wav = torch.randn(3, 16000, generator=g) * (torch.arange(16000)[None] < lengths[:, None])
    with torch.no_grad():
        ours = student(wav, lengths)
        ref, flen = release_reference(state, wav, lengths)
    assert torch.equal(ours.lengths, flen)
    for b in range(3):
        n = int(flen[b])
        for a, r in zip(ours.projections, ref):
            torch.testing.assert_close(a[b, :n], r[b, :n], atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize("preset", ["armhubert-s", "maskhubert"])
def test_presets_are_inferred_from_shapes(tmp_path, preset):
    _write_release_ckpt(tmp_path / "x.ckpt", preset)
    student = import_release(tmp_path / "x.ckpt")
    assert student.config.ffn_dim == {"armhubert-s": 816, "maskhubert": 640}[preset]
    assert student.config.reuse_pattern == ([True, False] * 6 if preset == "armhubert-s" else [True] * 12)
    with pytest.raises(ValueError, match="match no preset"):
        import_release(tmp_path / "x.ckpt", preset="armhubert" if preset == "armhubert-s" else "armhubert-s")


def test_import_release_cli_round_trip(release_ckpt, tmp_path):
    path, _ = release_ckpt
    assert main(["import-release", str(path), str(tmp_path / "out")]) == 0
    loaded = Student.from_pretrained(tmp_path / "out").eval()
    direct = import_release(path).eval()
    assert loaded.reuse_mode == "release"
    wav = torch.randn(2, 8000)
    with torch.no_grad():
        for a, b in zip(loaded(wav).projections, direct(wav).projections):
            assert torch.equal(a, b)
    assert not any("teacher" in k for k in loaded.state_dict())


def test_hostile_checkpoint_is_refused_before_anything_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"state_dict": {"student_model.mask_emb": torch.zeros(3)}, "x": Evil()}, tmp_path / "evil.ckpt")
    with pytest.raises(UnsafeCheckpointError, match="system"):
        import_release(tmp_path / "evil.ckpt")
    assert not marker.exists()
    result = subprocess.run(
        [sys.executable, "-m", "armdistill.cli", "import-release", str(tmp_path / "evil.ckpt"), str(tmp_path / "o")],
        capture_output=True, text=True,
    )
    assert result.returncode != 0 and "system" in result.stderr and not marker.exists()
