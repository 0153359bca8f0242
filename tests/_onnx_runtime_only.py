"""Run exported models with onnxruntime and numpy alone: ``python _onnx_runtime_only.py JOBS.json``.

JOBS.json lists ``[model.onnx, inputs.npz, outputs.npz]`` triples; each inputs file holds
``wav`` and ``lengths`` arrays, each outputs file gets every model output by name. armdistill
and torch are made unimportable first, so the models must stand on their own.
"""

import json
import sys

for name in ("armdistill", "torch", "transformers"):
    sys.modules[name] = None  # a None entry makes ``import name`` raise ImportError

try:
    import armdistill  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("armdistill is importable")

import numpy as np
import onnxruntime as ort

options = ort.SessionOptions()
options.intra_op_num_threads = 1
sessions = {}
for model, inputs, outputs in json.loads(open(sys.argv[1]).read()):
    if model not in sessions:
        sessions[model] = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    session = sessions[model]
    feeds = dict(np.load(inputs))
    names = [o.name for o in session.get_outputs()]
    np.savez(outputs, **dict(zip(names, session.run(None, feeds))))
print(f"ran {len(sessions)} models without armdistill or torch")
