"""An exported ONNX student on disk and under onnxruntime (written by ``armdistill.export.onnx``).

Kept apart from the exporter so that readers (probe upstreams, benchmarks) need neither torch's
exporter nor the export side of the package.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from armdistill.config import ConfigError
from armdistill.errors import MissingFileError

MODEL_NAME = "model.onnx"
INT8_NAME = "model.int8.onnx"
INTERFACE_NAME = "onnx.json"


def onnx_model_path(path: Path) -> Path | None:
    """The model a command-line spec names: a ``.onnx`` file, or a directory's ``model.onnx``
    (an export directory); None when ``path`` is neither."""
    if path.suffix == ".onnx":
        if not path.is_file():
            raise MissingFileError(f"{path}: no such ONNX model")
        return path
    if path.is_dir() and (path / MODEL_NAME).is_file():
        return path / MODEL_NAME
    return None


class OnnxStudent:
    """An exported student run by onnxruntime: ``model(wav, lengths)`` -> ``{output name: array}``.

    wav ``[batch, samples]`` float32, lengths ``[batch]`` valid samples; ``threads``: onnxruntime
    intra-op threads (None: onnxruntime's default, one per core); ``device``: ``cpu`` or ``cuda``
    (onnxruntime-gpu's CUDA execution provider).
    """

    def __init__(self, path: str | Path, threads: int | None = None, device: str = "cpu"):
        import onnxruntime as ort

        self.path = Path(path)
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        provider = "CUDAExecutionProvider" if device == "cuda" else "CPUExecutionProvider"
        if provider not in ort.get_available_providers():
            raise ConfigError(f"{self.path}: onnxruntime has no {provider} (install onnxruntime-gpu for --device cuda)")
        self.session = ort.InferenceSession(str(self.path), options, providers=[provider])
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.output_shapes = {o.name: o.shape for o in self.session.get_outputs()}

    def __call__(self, wav: np.ndarray, lengths: np.ndarray) -> dict[str, np.ndarray]:
        feeds = {"wav": np.ascontiguousarray(wav, dtype=np.float32), "lengths": np.asarray(lengths, dtype=np.int64)}
        return dict(zip(self.output_names, self.session.run(None, feeds)))
