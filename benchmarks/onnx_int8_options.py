"""What each int8 option of an ONNX export buys: accuracy on a distilled student, CPU time on armhubert.

    python benchmarks/onnx_int8_options.py --student demo_out/distill/student \
        --calibration CORPUS/train.tsv --test CORPUS/test.tsv --out benchmarks/results/onnx_int8_options.json

Options: ``dynamic`` (what ``armdistill export --quantize int8`` writes: int8 MatMul / Gemm
weights, activations quantised per call, fp32 convolutions) and ``static-cnn`` (the same plus
onnxruntime static quantisation of every convolution but the waveform one: QDQ, per-channel int8
weights, activation ranges by MinMax over the first ``--calibration-utterances`` of the
calibration manifest, run one utterance at a time). Accuracy: int8 vs fp32 relative L2 of
``hidden_states`` over the first ``--test-utterances`` test utterances. Speed: CPU time
(``time.process_time``) at one thread of HuBERT Base eager (random weights) and a random
armhubert's exports, batch 1 x 10 s, interleaved, medians, plus onnxruntime's per-op profile.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from armdistill.data.audio import load_audio
from armdistill.data.manifest import read_manifest
from armdistill.eval.bench import BenchSettings, device_name, load_runners, measure
from armdistill.export.onnx import export_student, quantize_int8
from armdistill.io.onnx_model import INT8_NAME, MODEL_NAME, OnnxStudent
from armdistill.models.student import Student

SECONDS = 10.0


class ManifestReader(CalibrationDataReader):
    """Waveforms as single-utterance feeds ``{wav [1, samples], lengths [1]}``."""

    def __init__(self, waves: list[np.ndarray]):
        self.waves = waves
        self.rewind()

    def get_next(self) -> dict[str, np.ndarray] | None:
        wav = next(self.items, None)
        return None if wav is None else {"wav": wav[None], "lengths": np.array([len(wav)], dtype=np.int64)}

    def rewind(self) -> None:
        self.items = iter(self.waves)


def utterances(manifest: Path, count: int) -> list[np.ndarray]:
    entries = read_manifest(manifest)
    return [load_audio(entries.audio_path(i)) for i in range(min(count, len(entries)))]


def quantize_static_cnn(fp32: Path, int8: Path, calibration: list[np.ndarray]) -> None:
    """Static int8 convolutions (all but the one reading the waveform), then the shipped dynamic MatMuls."""
    model = onnx.load(str(fp32))
    weights = {w.name: w.dims for w in model.graph.initializer}
    convs = [n.name for n in model.graph.node if n.op_type == "Conv" and weights[n.input[1]][1] > 1]
    staged = int8.with_suffix(".static.onnx")
    logging.getLogger().setLevel(logging.ERROR)
    quantize_static(str(fp32), str(staged), ManifestReader(calibration), quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=["Conv"], nodes_to_quantize=convs, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    quantize_int8(staged, int8)
    staged.unlink()


def variants(student: Student, root: Path, calibration: list[np.ndarray]) -> dict[str, Path]:
    export_student(student, root, "int8")
    quantize_static_cnn(root / MODEL_NAME, root / "model.static-cnn.onnx", calibration)
    return {"fp32": root / MODEL_NAME, "dynamic": root / INT8_NAME, "static-cnn": root / "model.static-cnn.onnx"}


def accuracy(paths: dict[str, Path], test: list[np.ndarray]) -> dict[str, dict]:
    outputs = {}
    for name, path in paths.items():
        model = OnnxStudent(path, 1)
        outputs[name] = [model(w[None], np.array([len(w)])) for w in test]
    result = {}
    for name in paths:
        if name != "fp32":
            num = sum(np.sum((a["hidden_states"] - b["hidden_states"]) ** 2) for a, b in zip(outputs[name], outputs["fp32"]))
            den = sum(np.sum(b["hidden_states"] ** 2) for b in outputs["fp32"])
            result[name] = {"hidden_states_relative_l2": round(float(np.sqrt(num / den)), 5)}
    return result


def profile(path: Path, runs: int = 3) -> dict[str, float]:
    """Per-op-type kernel time (ms per forward, wall clock) of one 10 s utterance."""
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "profile")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    wav = 0.1 * np.random.default_rng(0).standard_normal((1, round(SECONDS * 16000)), dtype=np.float32)
    feeds = {"wav": wav, "lengths": np.array([wav.shape[1]], dtype=np.int64)}
    for _ in range(runs + 1):
        session.run(None, feeds)
    by_op: dict[str, float] = defaultdict(float)
    for event in json.loads(Path(session.end_profiling()).read_text()):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            by_op[event["args"]["op_name"]] += event["dur"] / 1000 / (runs + 1)
    return {op: round(ms, 2) for op, ms in sorted(by_op.items(), key=lambda kv: -kv[1]) if ms >= 1.0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--student", type=Path, required=True, help="distilled student directory (accuracy)")
    p.add_argument("--calibration", type=Path, required=True, help="manifest of calibration audio")
    p.add_argument("--calibration-utterances", type=int, default=32)
    p.add_argument("--test", type=Path, required=True, help="manifest of test audio")
    p.add_argument("--test-utterances", type=int, default=20)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    torch.set_num_threads(1)
    calibration = utterances(args.calibration, args.calibration_utterances)
    with tempfile.TemporaryDirectory() as tmp:
        demo = variants(Student.from_pretrained(args.student), Path(tmp) / "student", calibration)
        acc = accuracy(demo, utterances(args.test, args.test_utterances))
        torch.manual_seed(0)
        arm = variants(Student.from_preset("armhubert"), Path(tmp) / "armhubert", calibration)
        settings = BenchSettings(batch=1, seconds=(SECONDS,), throughput_seconds=1.0, repeats=args.repeats,
                                 reuse_modes=("paper",), threads=1)
        load_before = os.getloadavg()
        runners = [r for spec in ["hubert-base", *map(str, arm.values())] for r in load_runners(spec, settings)]
        records = measure(runners, settings)
        load_after = os.getloadavg()
        profiles = {name: profile(path) for name, path in arm.items()}
    cpu = {r["name"]: r["cpu_ms"][f"{SECONDS:g}"]["median"] for r in records}
    base = cpu.pop("hubert-base")
    speed = {name: {"cpu_ms_median": round(cpu[str(path)], 1), "speedup_vs_hubert_base": round(base / cpu[str(path)], 2)}
             for name, path in arm.items()}
    result = {
        "what": "int8 options of the ONNX export: accuracy on a distilled student, CPU time on armhubert",
        "device": f"{device_name(torch.device('cpu'))}; 1 thread; measured under load from other jobs",
        "command": "python benchmarks/onnx_int8_options.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()),
        "onnxruntime": ort.__version__,
        "load_average_1min": {"before": load_before[0], "after": load_after[0]},
        "accuracy_student": str(args.student),
        "int8_vs_fp32": acc,
        "hubert_base_eager_cpu_ms_median": round(base, 1),
        "armhubert_onnx": speed,
        "armhubert_profile_ms_by_op": profiles,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"int8_vs_fp32": {k: v["hidden_states_relative_l2"] for k, v in acc.items()}, "speed": speed}, indent=2))


if __name__ == "__main__":
    main()
