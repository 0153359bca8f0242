"""An exported ONNX student on disk and under onnxruntime (written by ``armdistill.export.onnx``).

Kept apart from the exporter so that readers (probe upstreams, benchmarks) need neither torch's
exporter nor the export side of the package.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MODEL_NAME = "model.onnx"
INT8_NAME = "model.int8.onnx"
INTERFACE_NAME = "onnx.json"


class OnnxStudent:
    """An exported student run by onnxruntime: ``model(wav, lengths)`` -> ``{output name: array}``.

    wav ``[batch, samples]`` float32, lengths ``[batch]`` valid samples; ``threads``: onnxruntime
    intra-op threads (None: onnxruntime's default, one per core).
    """

    def __init__(self, path: str | Path, threads: int | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.output_shapes = {o.name: o.shape for o in self.session.get_outputs()}

    def __call__(self, wav: np.ndarray, lengths: np.ndarray) -> dict[str, np.ndarray]:
        feeds = {"wav": np.ascontiguousarray(wav, dtype=np.float32), "lengths": np.asarray(lengths, dtype=np.int64)}
        return dict(zip(self.output_names, self.session.run(None, feeds)))
