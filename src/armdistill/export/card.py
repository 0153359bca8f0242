"""The model card (``README.md``) of a transformers export, and the probe results it reports."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from armdistill.errors import UserError
from armdistill.eval.report import METRICS_NAME, TASK_COLUMNS, column_key, probe_value
from armdistill.eval.upstream import STUDENT_FEATURES, StudentUpstream
from armdistill.frames import SAMPLE_RATE
from armdistill.models.config import PRESETS, StudentConfig
from armdistill.models.export_layout import HEADS_CONFIG, HEADS_WEIGHTS
from armdistill.models.student import Student

MATHS = {
    "paper": "a reusing layer applies softmax(Q K^T / sqrt(d)) of the most recent computing layer to its own "
             "values (the paper's ARM; computed with scaled_dot_product_attention)",
    "explicit": "the paper's maths with the computing layer's probability map materialised and handed on",
    "release": "the released checkpoints' maths: the handed-on map is read heads-major as batch-major and "
               "softmaxed again, and the first conv's GroupNorm takes statistics over padding, so an "
               "utterance's output depends on the rest of its batch",
}


@dataclass
class CardFacts:
    name: str
    native: bool
    config: StudentConfig
    info: dict[str, Any]  # models.commands.model_info
    distill: dict[str, Any]  # distill.json ({} when the student has none)
    normalize: bool | None
    checks: dict[str, float]  # export.hf.check_export
    tolerance: float
    probes: list[dict[str, Any]] = field(default_factory=list)


def probe_results(student: Student, student_dir: Path, extra: list[str | Path]) -> list[dict[str, Any]]:
    """Probe results (``metrics.json``) of this very student: below its directory, its run
    directory (the parent holding the run's ``config.yaml``) and ``extra`` files or directories,
    kept when their upstream fingerprint is this student's."""
    fingerprints = {StudentUpstream(student, f).fingerprint(): f for f in STUDENT_FEATURES
                    if f == "hidden" or student.heads is not None}
    roots = [student_dir] + ([student_dir.parent] if (student_dir.parent / "config.yaml").is_file() else [])
    files = {p for root in roots for p in root.rglob(METRICS_NAME)}
    for path in map(Path, extra):
        if path.is_file():
            files.add(path)
        elif path.is_dir():
            files.update(path.rglob(METRICS_NAME))
        else:
            raise UserError(f"--probes {path}: no such file or directory")
    rows = []
    for path in sorted(files):
        try:
            metrics = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise UserError(f"{path}: not valid JSON: {err}") from None
        if isinstance(metrics, dict) and metrics.get("fingerprint") in fingerprints:
            column_key(metrics, path)
            rows.append({"task": metrics["task"], "features": fingerprints[metrics["fingerprint"]],
                         "value": probe_value(metrics, path), "file": str(path)})
    return rows


def preset_name(cfg: StudentConfig, distill: dict[str, Any]) -> str:
    """The recipe's preset, else every preset this configuration equals (in its reuse mode)."""
    named = ((distill.get("config") or {}).get("student") or {}).get("preset")
    if named:
        return str(named)
    same = [name for name, preset in PRESETS.items() if preset.replace(reuse_mode=cfg.reuse_mode) == cfg]
    return " = ".join(same) if same else "custom"


def _pattern(cfg: StudentConfig) -> str:
    computing = [i for i, c in enumerate(cfg.reuse_pattern) if c]
    if len(computing) == cfg.num_layers:
        return "every layer computes its attention map"
    return (f"{' '.join('C' if c else 'R' for c in cfg.reuse_pattern)} (C computes, R reuses the map of the most "
            f"recent computing layer; computing layers, 0-based: {', '.join(map(str, computing))})")


def _usage(facts: CardFacts) -> str:
    remote = "" if facts.native else ", trust_remote_code=True"
    return f"""```python
import torch
from transformers import AutoFeatureExtractor, AutoModel

# "{facts.name}": this directory, or its Hub id once uploaded
extractor = AutoFeatureExtractor.from_pretrained("{facts.name}")
model = AutoModel.from_pretrained("{facts.name}"{remote}).eval()
wavs = [torch.randn(16000).numpy(), torch.randn(8000).numpy()]  # 16 kHz mono
inputs = extractor(wavs, sampling_rate={SAMPLE_RATE}, padding=True, return_attention_mask=True, return_tensors="pt")
with torch.no_grad():
    hidden_states = model(**inputs, output_hidden_states=True).hidden_states  # {facts.config.num_layers + 1} x [batch, frames, {facts.config.dim}]
```
"""


def _padding(facts: CardFacts) -> str:
    measured = (f"Measured at export: the shorter utterance (0.6 s) of a padded batch with a 1 s one differs from "
                f"its unpadded run by up to {facts.checks['padded']:.2e}.")
    if facts.native:
        return ("transformers' `HubertModel` takes the first conv layer's GroupNorm statistics over the whole "
                "padded waveform (padding included; the attention mask only zeroes padded frames before the "
                "positional convolution and masks them as attention keys), so in a padded batch an utterance's "
                "outputs differ from its outputs alone. armdistill's own front end uses valid samples only. For "
                f"exact outputs run utterances one at a time or in equal-length batches. {measured}")
    if facts.config.reuse_mode == "release":
        return f"As trained by the release, outputs depend on the rest of the batch (see the maths above). {measured}"
    return ("Padding-exact: with `attention_mask`, the GroupNorm statistics use each utterance's valid samples, "
            f"so an utterance in a padded batch gets the outputs it gets alone. {measured}")


def _provenance(facts: CardFacts) -> list[str]:
    d = facts.distill
    if not d:
        return ["No `distill.json` came with the student (as with one imported from a released checkpoint)."]
    cfg = d.get("config") or {}
    teacher, loss, data = cfg.get("teacher") or {}, cfg.get("loss") or {}, cfg.get("data") or {}
    return [
        f"- teacher: `{teacher.get('path', '?')}`, weights sha256 `{d.get('teacher_fingerprint', '?')}`",
        f"- objective: `{loss.get('objective', '?')}`; optimiser steps: {d.get('global_step', '?')}; "
        f"code revision: `{d.get('git_revision', '?')}`",
        f"- training data: `{data.get('train', '?')}`",
        "- the full resolved recipe: `distill.json` in this directory",
    ]


def model_card(facts: CardFacts) -> str:
    cfg, info = facts.config, facts.info
    norm = {True: "true", False: "false", None: "false (the teacher's setting is not recorded: check it)"}[facts.normalize]
    kind = ("a native transformers `HubertModel` (no remote code)" if facts.native
            else "an `ArmdistillModel` whose code, generated from armdistill's, is in this directory "
                 "(load with `trust_remote_code=True`)")
    lines = [
        "---", "library_name: transformers", "pipeline_tag: feature-extraction",
        "tags: [speech, audio, self-supervised-learning, knowledge-distillation, armdistill]", "---", "",
        f"# {facts.name}", "",
        f"A speech self-supervised student distilled with armdistill, exported as {kind}.", "",
        "## Use", "", _usage(facts),
        "`AutoModelForCTC` and `AutoModelForAudioClassification` load it with a new CTC or classification head "
        "for fine-tuning with `Trainer`.", "",
        "## Model", "",
        "| | |", "|---|---|",
        f"| preset | {preset_name(cfg, facts.distill)} |",
        f"| parameters | {info['params_backbone']:,} backbone + {info['params_heads']:,} projection heads = "
        f"{info['params_total']:,} |",
        f"| compute | {info['gmacs_per_second']:.3f} GMACs per second of audio (torch's FLOP counter / 2, "
        f"{info['seconds']:g} s input, heads included, `{cfg.reuse_mode}` maths) |",
        f"| shape | {cfg.num_layers} layers, dim {cfg.dim}, FFN {cfg.ffn_dim}, {cfg.num_heads} heads, "
        f"{'pre' if cfg.layer_norm_first else 'post'}-LN, {info['frame_rate_hz']:g} frames/s |",
        f"| attention reuse | {_pattern(cfg)} |",
        f"| reuse maths | `{cfg.reuse_mode}`: {MATHS[cfg.reuse_mode]} |",
        f"| waveform normalisation | `do_normalize: {norm}` in preprocessor_config.json |",
        f"| distillation-only settings | grad_scale {cfg.grad_scale}, feature_grad_mult {cfg.feature_grad_mult:g}: "
        "they scale gradients while distilling and do not change outputs; the transformers classes train without "
        "them |", "",
        "## Outputs", "",
        f"`hidden_states`: the encoder input, then each layer's output ({cfg.num_layers + 1} tensors)"
        + (", the last one before the encoder's final LayerNorm as transformers reports pre-LN models "
           "(`last_hidden_state` is after it)" if facts.native and cfg.layer_norm_first else "") + ".",
    ]
    if cfg.proj_dim is not None:
        lines.append(f"The {len(cfg.head_layers)} projection heads (dim {cfg.dim} -> {cfg.proj_dim}) that matched the "
                     f"teacher's layers are in `{HEADS_WEIGHTS}`, described by `{HEADS_CONFIG}`.")
    lines += ["", "## Padding", "", _padding(facts), "",
              "## Verification", "",
              f"Loaded back with transformers at export: `hidden_states` equal armdistill's to "
              f"{facts.checks['unpadded']:.2e} (tolerance {facts.tolerance:g}; fp32, a batch of two 1 s random "
              "waveforms).", "",
              "## Training", "", *_provenance(facts), ""]
    if facts.probes:
        lines += ["## Probe results (armdistill probe)", "", "| task | metric | features | test |", "|---|---|---|---|"]
        for p in facts.probes:
            title = TASK_COLUMNS[p["task"]][0]
            lines.append(f"| {p['task']} | {title} | {p['features']} | {p['value']:.2f} |")
        lines.append("")
    return "\n".join(lines)
