"""Loads transformers exports where armdistill cannot be imported (run by test_export_hf.py).

argv[1]: JSON {"inputs": safetensors file (wav, padded, mask), "out": directory,
"exports": {name: {"dir": path, "remote": bool, "finetune": bool}}}. Writes OUT/NAME.safetensors
(hidden states, last_hidden_state, padded hidden states, head projections) and prints a JSON
report of the fine-tuning steps.
"""

import sys

sys.modules["armdistill"] = None  # any import of armdistill now raises ImportError
try:
    import armdistill  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("armdistill is importable")

import json
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel, AutoModelForAudioClassification, AutoModelForCTC

torch.set_num_threads(1)
job = json.loads(sys.argv[1])
inputs = load_file(job["inputs"])
out_dir = Path(job["out"])
LAYER = re.compile(r"encoder\.layers\.(\d+)\.")


def grad_groups(model: torch.nn.Module) -> dict[str, bool]:
    """Per encoder layer / CNN / task head: every parameter has a finite gradient, and some is nonzero."""
    groups: dict[str, list[torch.Tensor | None]] = {}
    for name, param in model.named_parameters():
        layer = LAYER.search(name)
        key = (f"layer {layer[1]}" if layer else "cnn" if "feature_extractor" in name
               else "head" if name.split(".")[0] in ("lm_head", "projector", "classifier") else None)
        if key is not None:
            groups.setdefault(key, []).append(param.grad)
    return {k: all(g is not None and bool(torch.isfinite(g).all()) for g in grads) and any(bool(g.abs().sum() > 0)
            for g in grads if g is not None) for k, grads in groups.items()}


def finetune(cls, directory: str, remote: bool, labels: torch.Tensor, **config) -> dict:
    torch.manual_seed(0)
    model = cls.from_pretrained(directory, trust_remote_code=remote, **config).train()
    weights = getattr(model, "layer_weights", None)  # created at load, so initialised by the model class
    initial = None if weights is None else weights.tolist()
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss = model(inputs["padded"], attention_mask=inputs["mask"], labels=labels).loss
    loss.backward()
    groups = grad_groups(model)
    optimiser.step()
    return {"class": type(model).__name__, "loss": float(loss), "groups": groups, "layer_weights": initial}


report = {}
for name, spec in job["exports"].items():
    model = AutoModel.from_pretrained(spec["dir"], trust_remote_code=spec["remote"]).eval()
    with torch.no_grad():
        plain = model(inputs["wav"], output_hidden_states=True)
        padded = model(inputs["padded"], attention_mask=inputs["mask"], output_hidden_states=True)
    tensors = {f"hidden.{i}": h for i, h in enumerate(plain.hidden_states)}
    tensors |= {f"padded.{i}": h for i, h in enumerate(padded.hidden_states)}
    tensors["last"] = plain.last_hidden_state
    heads_config = Path(spec["dir"]) / "heads.json"
    if heads_config.is_file():
        heads, described = load_file(str(Path(spec["dir"]) / "heads.safetensors")), json.loads(heads_config.read_text())
        for k, layer in enumerate(described["head_layers"]):
            x = plain.last_hidden_state if layer + 1 == len(plain.hidden_states) - 1 else plain.hidden_states[layer + 1]
            tensors[f"projection.{k}"] = x @ heads[f"heads.{k}.weight"].T + heads[f"heads.{k}.bias"]
    save_file({k: v.clone() for k, v in tensors.items()}, str(out_dir / f"{name}.safetensors"))
    report[name] = {"class": type(model).__name__, "module": type(model).__module__}
    if spec["finetune"]:
        report[name]["ctc"] = finetune(AutoModelForCTC, spec["dir"], spec["remote"],
                                       torch.tensor([[1, 2, 3, 2], [4, 5, -100, -100]]), vocab_size=8)
        report[name]["classification"] = finetune(AutoModelForAudioClassification, spec["dir"], spec["remote"],
                                                  torch.tensor([0, 2]), num_labels=3, use_weighted_layer_sum=True)
print(json.dumps(report))
