"""ONNX Runtime export of a student: ``model.onnx``, ``onnx.json`` and optionally ``model.int8.onnx``.

The graph takes ``wav [batch, samples]`` float32 and ``lengths [batch]`` int64 (valid samples)
with dynamic batch and time axes, and keeps the student's padding exactness: the masked
GroupNorm and key-padding masks are part of the graph, so valid frames of a padded batch equal
PyTorch's. It is traced by torch's TorchScript-based exporter (``dynamo=False``): both of torch's
exporters matched PyTorch to 1e-5 on the tiny students in every reuse mode, and this one exported
in 1-5 s where the ``torch.export``-based one took 20-70 s (2 shared CPU cores).

Two exact simplifications make the graph cheaper for onnxruntime (per-op profiles in
``docs/export.md``): ``paper`` students are traced through the stored-map route (``kernel="stored"``,
the same maths), so a reusing layer applies its computing layer's map instead of recomputing
``softmax(QK^T)``, and padded keys are masked by adding a ``[batch, 1, 1, keys]`` bias of 0 / -inf
(:func:`additive_masks`) instead of selecting over the whole ``[batch, heads, T, S]`` score tensor.

``--quantize int8`` adds onnxruntime's dynamic quantisation (int8 weights, activations
quantised per call) of the MatMul / Gemm weights; the convolutions stay fp32 (see
``QUANTIZED_OPS``). Activation ranges are taken over the whole batch tensor, so unlike fp32 the
int8 model is not padding-exact: an utterance's outputs move slightly with its batch-mates. ``onnx.json`` records the interface, the fp32 model's distance to PyTorch
and the int8 model's distance to fp32 on a fixed padded check batch.
"""

from __future__ import annotations

import argparse
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper
from torch import Tensor, nn

from armdistill.config import ConfigError, to_dict
from armdistill.errors import NonFiniteError, UserError
from armdistill.io.onnx_model import INT8_NAME, INTERFACE_NAME, MODEL_NAME, OnnxStudent
from armdistill.models.student import Student

INTERFACE_VERSION = 1
OPSET = 17
INPUTS: tuple[str, ...] = ("wav", "lengths")
# Dynamic quantisation of the linear layers only; the convolutions stay fp32. Dynamic int8
# convolutions (onnxruntime's ConvInteger) made armhubert slower and its hidden states 4x further
# from fp32. Static int8 convolutions (QLinearConv, per-channel weights, calibrated activations)
# made it 1.3x faster but, on the demo's student, moved the hidden states 7x further from fp32
# with one CNN layer quantised and 60x with all of them: one scale per activation tensor cannot
# serve CNN channels whose ranges differ tenfold, and the feature projection's LayerNorm amplifies
# the error of the small ones (benchmarks/onnx_int8_options.py).
QUANTIZED_OPS: tuple[str, ...] = ("MatMul", "Gemm")
# The check batch: two utterances of seeded noise, the second padded (samples per utterance).
CHECK_LENGTHS: tuple[int, ...] = (32000, 20480)


class ExportGraph(nn.Module):
    """The student as the exported graph sees it: ``(wav, lengths)`` -> named outputs.

    Returns ``last_hidden_state [batch, frames, dim]``, ``hidden_states [layers + 1, batch,
    frames, dim]`` (layer-major, as ``StudentOutput.hidden_states``), ``projections [heads,
    batch, frames, proj_dim]`` when the student has heads, ``padding_mask [batch, frames]``.
    """

    def __init__(self, student: Student):
        super().__init__()
        self.student = student.eval()

    def forward(self, wav: Tensor, lengths: Tensor) -> tuple[Tensor, ...]:
        out = self.student(wav, lengths, kernel="stored")
        outputs = [out.hidden_states[-1], torch.stack(out.hidden_states)]
        if out.projections is not None:
            outputs.append(torch.stack(out.projections))
        return (*outputs, out.padding_mask)


def output_names(student: Student) -> list[str]:
    heads = ["projections"] if student.heads is not None else []
    return ["last_hidden_state", "hidden_states", *heads, "padding_mask"]


def interface(student: Student) -> dict:
    """Inputs and outputs with their dtypes and shapes (strings name the dynamic axes)."""
    cfg = student.config
    shapes = {
        "last_hidden_state": ("float32", ["batch", "frames", cfg.dim]),
        "hidden_states": ("float32", [cfg.num_layers + 1, "batch", "frames", cfg.dim]),
        "projections": ("float32", [len(cfg.head_layers), "batch", "frames", cfg.proj_dim]),
        "padding_mask": ("bool", ["batch", "frames"]),
    }
    return {
        "inputs": [
            {"name": "wav", "dtype": "float32", "shape": ["batch", "samples"], "doc": "16 kHz waveforms, zero-padded"},
            {"name": "lengths", "dtype": "int64", "shape": ["batch"], "doc": "valid samples per waveform"},
        ],
        "outputs": [
            {"name": name, "dtype": shapes[name][0], "shape": shapes[name][1]} for name in output_names(student)
        ],
    }


def check_batch() -> tuple[np.ndarray, np.ndarray]:
    """The fixed padded batch on which export measures distances: ``(wav, lengths)``."""
    rng = np.random.default_rng(0)
    wav = np.zeros((len(CHECK_LENGTHS), max(CHECK_LENGTHS)), dtype=np.float32)
    for i, n in enumerate(CHECK_LENGTHS):
        wav[i, :n] = 0.1 * rng.standard_normal(n, dtype=np.float32)
    return wav, np.asarray(CHECK_LENGTHS, dtype=np.int64)


def distances(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per float output, over valid frames only: max |a - b| and ||a - b|| / ||b||."""
    valid = ~b["padding_mask"]
    result = {}
    for name, ref in b.items():
        if name == "padding_mask":
            continue
        diff = (a[name] - ref)[..., valid, :] if ref.ndim == 4 else (a[name] - ref)[valid]
        ref_valid = ref[..., valid, :] if ref.ndim == 4 else ref[valid]
        result[name] = {
            "max_abs": float(np.abs(diff).max()),
            "relative_l2": float(np.linalg.norm(diff) / max(np.linalg.norm(ref_valid), 1e-30)),
        }
    return result


def _is_neg_inf_constant(node: onnx.NodeProto) -> bool:
    """Whether ``node`` is a Constant whose ``value`` tensor is all -inf (other Constant forms, e.g.
    ``value_float``, are left alone)."""
    if node.op_type != "Constant" or [a.name for a in node.attribute] != ["value"]:
        return False
    value = numpy_helper.to_array(node.attribute[0].t)
    return value.size > 0 and bool(np.isneginf(value).all())


def additive_masks(model: onnx.ModelProto) -> int:
    """Rewrite every ``Where(mask, -inf, scores)`` as ``scores + Where(mask, -inf, 0)``; returns the count.

    Equal for finite scores (``s + 0 == s``, ``s - inf == -inf``). The mask is the key-padding mask
    broadcast over heads and queries, so the select runs on ``[batch, 1, 1, keys]`` and the
    full-size op is a broadcast Add, which onnxruntime runs several times faster than a broadcast Where.
    """
    producers = {name: node for node in model.graph.node for name in node.output}
    nodes, count = [], 0
    for node in model.graph.node:
        fill = producers.get(node.input[1]) if node.op_type == "Where" else None
        if fill is None or not _is_neg_inf_constant(fill):
            nodes.append(node)
            continue
        zero, bias = f"{node.name}/zero", f"{node.name}/bias"
        nodes += [
            helper.make_node("Constant", [], [zero], name=zero, value=numpy_helper.from_array(np.zeros((), np.float32))),
            helper.make_node("Where", [node.input[0], node.input[1], zero], [bias], name=bias),
            helper.make_node("Add", [node.input[2], bias], list(node.output), name=node.name),
        ]
        count += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return count


def export_onnx(student: Student, path: Path) -> None:
    """Trace ``student`` to ``path`` with dynamic batch, samples and frames axes, key masks additive."""
    names = output_names(student)
    frames = {0: "batch", 1: "frames"}
    stacked = {1: "batch", 2: "frames"}
    axes = {"wav": {0: "batch", 1: "samples"}, "lengths": {0: "batch"}}
    axes.update({name: stacked if name in ("hidden_states", "projections") else frames for name in names})
    wav, lengths = check_batch()
    with torch.no_grad(), warnings.catch_warnings():
        # torch's notice that this exporter is the legacy one, and tracer notes on values that are
        # constants of the model (GroupNorm's training-only size check, the attention scale
        # 1/sqrt(head_dim)): nothing the user can act on, nothing that changes the graph
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module="torch.nn.functional")
        warnings.filterwarnings("ignore", "Converting a tensor to a Python float", torch.jit.TracerWarning,
                                module=r"armdistill\.models\.attention")
        torch.onnx.export(
            ExportGraph(student), (torch.from_numpy(wav), torch.from_numpy(lengths)), str(path),
            input_names=list(INPUTS), output_names=names, dynamic_axes=axes, opset_version=OPSET, dynamo=False,
        )
    model = onnx.load(str(path))
    additive_masks(model)
    onnx.save(model, str(path))


def quantize_int8(fp32: Path, int8: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # quantize_dynamic logs (root logger) a hint to pre-process the model first; its symbolic shape
    # inference cannot follow our length arithmetic, and without it pre-processing changed
    # neither accuracy nor speed measurably, so the hint is silenced.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(fp32, int8, weight_type=QuantType.QInt8, op_types_to_quantize=list(QUANTIZED_OPS))
    finally:
        root.setLevel(level)


def reference_outputs(student: Student, wav: np.ndarray, lengths: np.ndarray) -> dict[str, np.ndarray]:
    """PyTorch's outputs for the exported graph, by name."""
    with torch.no_grad():
        out = ExportGraph(student)(torch.from_numpy(wav), torch.from_numpy(lengths))
    return {name: t.numpy() for name, t in zip(output_names(student), out)}


def export_student(student: Student, out: str | Path, quantize: str | None = None) -> Path:
    """Write ``out/model.onnx`` (+ ``model.int8.onnx``) and ``out/onnx.json``; returns ``out``."""
    if quantize not in (None, "int8"):
        raise ConfigError(f"quantize: expected 'int8' or None, got {quantize!r}")
    out = Path(out)
    bad = student.nonfinite_tensors()
    if bad:
        raise NonFiniteError(f"{out}: not written: {len(bad)} tensor(s) hold NaN or inf values ({', '.join(bad[:3])})")
    written = [out / MODEL_NAME, out / INTERFACE_NAME, out / INT8_NAME]
    existing = [p for p in written if p.exists()]
    if existing:
        raise UserError(f"{existing[0]}: already exists; remove it or choose another output directory")
    out.mkdir(parents=True, exist_ok=True)
    student = student.eval()
    export_onnx(student, out / MODEL_NAME)
    wav, lengths = check_batch()
    reference = reference_outputs(student, wav, lengths)
    threads = torch.get_num_threads()
    fp32 = OnnxStudent(out / MODEL_NAME, threads)(wav, lengths)
    info = {
        "format": "armdistill-onnx",
        "version": INTERFACE_VERSION,
        "opset": OPSET,
        "frame_rate_hz": student.frame_rate_hz,
        "reuse_mode": student.reuse_mode,
        "head_layers": student.config.head_layers,
        **interface(student),
        "models": {"fp32": MODEL_NAME},
        "check_batch": {"lengths": list(CHECK_LENGTHS), "signal": "seeded Gaussian noise, std 0.1"},
        "fp32_vs_pytorch": distances(fp32, reference),
        "student_config": to_dict(student.config),
    }
    if quantize == "int8":
        quantize_int8(out / MODEL_NAME, out / INT8_NAME)
        info["models"]["int8"] = INT8_NAME
        info["int8"] = {
            "weights": "int8, onnxruntime dynamic quantisation", "ops": list(QUANTIZED_OPS),
            "activations": "quantised per call over the whole batch tensor, so an utterance's outputs "
                           "depend slightly on the other utterances of its batch",
        }
        info["int8_vs_fp32"] = distances(OnnxStudent(out / INT8_NAME, threads)(wav, lengths), fp32)
    (out / INTERFACE_NAME).write_text(json.dumps(info, indent=2) + "\n")
    return out


def export(student_dir: str | Path, out: str | Path, args: argparse.Namespace) -> Path:
    """``armdistill export STUDENT_DIR OUT --format onnx [--quantize int8]``."""
    return export_student(Student.from_pretrained(student_dir), out, getattr(args, "quantize", None))
