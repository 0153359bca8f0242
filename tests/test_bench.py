"""``armdistill bench``: MACs equal hand counts (student and teacher), and every record of the
JSON has every field for presets, teacher directories and ONNX graphs."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest
import torch
from matplotlib.image import imread
from torch import nn

from armdistill.cli import main
from armdistill.models.macs import count_macs
from armdistill.models.student import Student
from armdistill.teachers import Teacher, make_random_model, make_random_teacher
from armdistill.teachers.tiny import TINY_CONFIG

SAMPLES = 16000  # one second


def conv_macs(specs: list[tuple[int, int, int]], samples: int, in_channels: int = 1) -> tuple[int, int]:
    """(MACs, output frames) of unpadded convs ``(channels, kernel, stride)`` without bias."""
    macs, length = 0, samples
    for channels, kernel, stride in specs:
        length = (length - kernel) // stride + 1
        macs += channels * in_channels * kernel * length
        in_channels = channels
    return macs, length


def encoder_layer_macs(t: int, dim: int, ffn: int, computes: bool, stored_map: bool) -> int:
    """Projections, attention (scores Q K^T unless a stored map is applied, then map x V) and FFN."""
    projections = (4 if computes else 2) * t * dim * dim
    scores = 0 if stored_map and not computes else t * t * dim
    return projections + scores + t * t * dim + 2 * t * dim * ffn


@pytest.mark.parametrize("mode", ["paper", "explicit"])
def test_student_macs_equal_a_hand_count(mode):
    dim, ffn, conv_dim, proj, kernel, groups = 16, 32, 8, 8, 3, 2
    student = Student.from_preset(
        "tiny-arm", conv_layers=[(conv_dim, 400, 320)], dim=dim, ffn_dim=ffn, num_heads=2, num_layers=2,
        reuse_pattern=[True, False], pos_conv_kernel=kernel, pos_conv_groups=groups, proj_dim=proj, reuse_mode=mode,
    ).eval()
    cnn, t = conv_macs([(conv_dim, 400, 320)], SAMPLES)
    assert t == 49
    hand = (
        cnn
        + t * conv_dim * dim  # feature projection
        + dim * (dim // groups) * kernel * t  # positional conv (odd kernel: T frames)
        + encoder_layer_macs(t, dim, ffn, computes=True, stored_map=mode == "explicit")
        + encoder_layer_macs(t, dim, ffn, computes=False, stored_map=mode == "explicit")
        + 2 * t * dim * proj  # two heads
    )
    assert count_macs(student, seconds=1.0) == hand


def test_teacher_macs_equal_a_hand_count():
    """The tiny HuBERT teacher on its default (SDPA) attention path, counted through Teacher."""
    teacher = Teacher(make_random_model("hubert"))
    assert teacher.model.config._attn_implementation == "sdpa"
    c = TINY_CONFIG
    cnn, t = conv_macs(list(zip(c["conv_dim"], c["conv_kernel"], c["conv_stride"])), SAMPLES)
    dim, ffn, kernel, groups = c["hidden_size"], c["intermediate_size"], c["num_conv_pos_embeddings"], c["num_conv_pos_embedding_groups"]
    hand = (
        cnn
        + t * c["conv_dim"][-1] * dim  # feature projection
        + dim * (dim // groups) * kernel * (t + 1)  # positional conv: an even kernel yields T + 1 frames
        + c["num_hidden_layers"] * encoder_layer_macs(t, dim, ffn, computes=True, stored_map=False)
    )
    assert count_macs(lambda wav: teacher.layer_outputs(wav), seconds=1.0) == hand


class TinyExport(nn.Module):
    """The ONNX interface of an exported student in miniature: (wav, lengths) -> hidden state, padding mask."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 8, 400, stride=320)
        self.head = nn.Linear(8, 4)

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.head(self.conv(wav[:, None]).transpose(1, 2))
        frames = torch.div(lengths - 400, 320, rounding_mode="floor") + 1
        return x, torch.arange(x.shape[1])[None] >= frames[:, None]


RECORD_FIELDS = {"name", "kind", "reuse_mode", "params_total", "params_backbone", "params_heads", "gmacs_per_second",
                 "latency_ms", "rtf", "cpu_ms", "throughput_audio_s_per_s", "peak_memory_mb"}
SECONDS = ["0.5", "1"]


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, int]:
    root = tmp_path_factory.mktemp("bench")
    teacher_dir = make_random_teacher(root / "teacher")
    model = TinyExport().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(2, SAMPLES), torch.tensor([SAMPLES, 12000])), str(root / "tiny.onnx"),
                          input_names=["wav", "lengths"], output_names=["last_hidden_state", "padding_mask"],
                          dynamic_axes={"wav": {0: "batch", 1: "samples"}, "lengths": {0: "batch"}}, dynamo=False)
    out = root / "out"
    argv = ["bench", "tiny-arm", str(teacher_dir), str(root / "tiny.onnx"), "--seconds", *SECONDS,
            "--throughput-seconds", "0.5", "--batch", "2", "--repeats", "2", "--reuse-modes", "paper", "explicit",
            "--threads", "1", "--out", str(out)]
    assert main(argv) == 0
    return json.loads((out / "bench.json").read_text()), out, sum(p.numel() for p in model.parameters())


def test_bench_json_has_every_field_for_every_model(bench_run):
    result, out, onnx_params = bench_run
    assert result["threads"] == 1 and result["torch"] == torch.__version__ and result["device"]
    assert result["settings"]["batch"] == 2 and result["settings"]["repeats"] == 2
    records = result["records"]
    assert [(r["kind"], r["reuse_mode"]) for r in records] == [
        ("student", "paper"), ("student", "explicit"), ("teacher", None), ("onnx", None)]
    for r in records:
        assert set(r) == RECORD_FIELDS
        assert list(r["latency_ms"]) == list(r["rtf"]) == list(r["cpu_ms"]) == SECONDS
        for key, lat in r["latency_ms"].items():
            assert 0 < lat["min"] <= lat["median"] <= lat["max"]
            assert 0 < r["cpu_ms"][key]["min"] <= r["cpu_ms"][key]["median"] <= r["cpu_ms"][key]["max"]
            assert r["rtf"][key] == pytest.approx(lat["median"] / 1000 / float(key))
        assert r["throughput_audio_s_per_s"] > 0 and r["peak_memory_mb"] >= 0
    paper, explicit, teacher, onnx = records
    counts = Student.from_preset("tiny-arm").num_parameters()
    assert {k: paper[k] for k in counts} == counts == {k: explicit[k] for k in counts}
    assert explicit["gmacs_per_second"] < paper["gmacs_per_second"]  # stored maps are applied, not recomputed
    assert teacher["params_heads"] == 0 and teacher["params_total"] == teacher["params_backbone"] > 0
    assert teacher["gmacs_per_second"] > 0
    assert onnx["params_total"] == onnx_params and onnx["gmacs_per_second"] is None
    assert imread(out / "bench.png").ndim == 3


def test_bench_refuses_what_it_cannot_run(tmp_path, capsys):
    assert main(["bench", "mfcc", "--out", str(tmp_path)]) == 2
    assert "baseline" in capsys.readouterr().err
    assert main(["bench", str(tmp_path / "missing.onnx"), "--out", str(tmp_path)]) == 2
    assert "missing.onnx" in capsys.readouterr().err
    assert main(["bench", "tiny-arm", "--repeats", "0", "--out", str(tmp_path)]) == 2
    assert not (tmp_path / "bench.json").exists()


def test_hubert_base_is_a_random_teacher_of_base_shape():
    from armdistill.eval.bench import load_model

    teacher = load_model("hubert-base")
    assert (teacher.num_layers, teacher.dim, teacher.downsample) == (12, 768, 320)
    assert math.isclose(sum(p.numel() for p in teacher.model.parameters()) / 1e6, 94.37, abs_tol=0.01)
