"""``armdistill export STUDENT OUT --format hf``: a student as a transformers model directory.

Two kinds, by what transformers' own classes can express:

* **native** (every layer computes attention, ``paper`` / ``explicit`` maths): a ``HubertConfig``
  and ``model.safetensors`` that ``HubertModel`` / ``AutoModel`` load without remote code;
* **remote code** (attention-map reuse, ``release`` maths): an ``ArmdistillConfig``, the same
  weights under our names, ``configuration_armdistill.py`` / ``modeling_armdistill.py`` generated
  from the package's own model code, and an ``auto_map`` for ``trust_remote_code=True``.

Both carry ``heads.safetensors`` + ``heads.json`` (the projection heads), ``preprocessor_config.json``
(``Wav2Vec2FeatureExtractor``), a ``README.md`` model card and the student's ``distill.json``.
The directory is loaded back with transformers before it is moved into place, and its
``hidden_states`` must equal the student's to ``TOLERANCE`` (fp32, unpadded input).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor
from transformers import AutoModel, HubertConfig, HubertModel, Wav2Vec2FeatureExtractor
from transformers.utils import logging as hf_logging

from armdistill.config import to_dict
from armdistill.distill.export import INFO_NAME
from armdistill.errors import UserError
from armdistill.export.card import CardFacts, model_card, probe_results
from armdistill.export.hf_configuration import ArmdistillConfig
from armdistill.export.hf_modeling import ArmdistillModel
from armdistill.export.remote_code import generate
from armdistill.frames import SAMPLE_RATE
from armdistill.io.atomic import atomic_directory
from armdistill.io.hub import resolve_pretrained
from armdistill.models.commands import model_info
from armdistill.models.config import StudentConfig
from armdistill.models.export_layout import HEADS_CONFIG, HEADS_WEIGHTS, STUDENT_KEY
from armdistill.models.exported import split_heads, to_hf_names
from armdistill.models.student import Student
from armdistill.teachers.convert import load_original
from armdistill.teachers.teacher import read_normalize

TOLERANCE = 1e-5
# root module -> its file in the export (remote-code kind)
REMOTE_ROOTS = {
    "armdistill.export.hf_configuration": "configuration_armdistill",
    "armdistill.export.hf_modeling": "modeling_armdistill",
}
AUTO_MAP = {
    "AutoConfig": "configuration_armdistill.ArmdistillConfig",
    "AutoModel": "modeling_armdistill.ArmdistillModel",
    "AutoModelForCTC": "modeling_armdistill.ArmdistillForCTC",
    "AutoModelForAudioClassification": "modeling_armdistill.ArmdistillForSequenceClassification",
}


def is_native(cfg: StudentConfig) -> bool:
    """Whether transformers' ``HubertModel`` computes exactly what the student computes."""
    return all(cfg.reuse_pattern) and cfg.reuse_mode != "release"


def hubert_config(cfg: StudentConfig) -> HubertConfig:
    """The ``HubertConfig`` of an all-attention student (our front end is HuBERT Base's kind:
    GroupNorm on the first conv only; LayerNorm placement picks the encoder class)."""
    return HubertConfig(
        hidden_size=cfg.dim, num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.ffn_dim, hidden_act="gelu", hidden_dropout=cfg.dropout,
        activation_dropout=cfg.activation_dropout, attention_dropout=cfg.attention_dropout,
        feat_proj_layer_norm=True, feat_proj_dropout=cfg.feature_dropout, layerdrop=0.0,
        feat_extract_norm="group", feat_extract_activation="gelu",
        conv_dim=[c for c, _, _ in cfg.conv_layers], conv_kernel=[k for _, k, _ in cfg.conv_layers],
        conv_stride=[s for _, _, s in cfg.conv_layers], conv_bias=cfg.conv_bias,
        num_conv_pos_embeddings=cfg.pos_conv_kernel, num_conv_pos_embedding_groups=cfg.pos_conv_groups,
        do_stable_layer_norm=cfg.layer_norm_first, architectures=["HubertModel"],
    )


def _write_native(student: Student, backbone: dict[str, Tensor], directory: Path) -> None:
    config = hubert_config(student.config)
    setattr(config, STUDENT_KEY, to_dict(student.config))
    model = HubertModel(config)
    model.load_state_dict(to_hf_names(backbone, student.config), strict=True)
    model.save_pretrained(directory)


def _write_remote(student: Student, backbone: dict[str, Tensor], directory: Path) -> None:
    cfg = student.config
    config = ArmdistillConfig(hidden_size=cfg.dim, num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
                              architectures=["ArmdistillModel"], auto_map=AUTO_MAP, **{STUDENT_KEY: to_dict(cfg)})
    model = ArmdistillModel(config)
    model.student.load_state_dict(backbone, strict=True)
    model.save_pretrained(directory)
    for root, stem in REMOTE_ROOTS.items():
        (directory / f"{stem}.py").write_text(generate(root, REMOTE_ROOTS))


def _write_heads(cfg: StudentConfig, heads: dict[str, Tensor], directory: Path) -> None:
    save_file({k: v.contiguous() for k, v in heads.items()}, str(directory / HEADS_WEIGHTS), metadata={"format": "pt"})
    description = {
        "proj_dim": cfg.proj_dim, "hidden_size": cfg.dim, "head_layers": cfg.head_layers,
        "input": "head k reads the output of layer head_layers[k] (0-based): hidden_states[head_layers[k] + 1], "
                 "for the last layer last_hidden_state",
        "tensors": "heads.{k}.weight [proj_dim, hidden_size] and heads.{k}.bias [proj_dim]: y = x W^T + b",
    }
    (directory / HEADS_CONFIG).write_text(json.dumps(description, indent=2) + "\n")


def teacher_normalize(info: dict) -> bool | None:
    """The teacher's waveform normalisation as ``distill.json`` records it (None when unknown)."""
    teacher = (info.get("config") or {}).get("teacher") or {}
    if isinstance(teacher.get("normalize"), bool):
        return teacher["normalize"]
    if not teacher.get("path"):
        return None
    try:  # null in the recipe: the run used the checkpoint's own flag (a Hub teacher's only if cached)
        path = resolve_pretrained(teacher["path"], "teacher.path", cached_only=True)
    except UserError:
        return None
    return read_normalize(path) if path.is_dir() else load_original(path)[1]


def _hidden(model: torch.nn.Module, wav: Tensor, mask: Tensor | None, pre_ln: bool) -> list[Tensor]:
    with torch.no_grad():
        out = model(wav, attention_mask=mask, output_hidden_states=True)
    states = list(out.hidden_states)
    if pre_ln:  # transformers' pre-LN encoders report the last layer before the final LayerNorm
        states[-1] = out.last_hidden_state
    return states


def check_export(student: Student, directory: Path) -> dict[str, float]:
    """Load ``directory`` with transformers; the largest |difference| from the student's hidden states
    on an unpadded batch (must be within ``TOLERANCE``), and on the shorter utterance of a padded one."""
    native = is_native(student.config)
    # the only remote code ever trusted: the files just generated from our own sources
    model = AutoModel.from_pretrained(directory, trust_remote_code=not native).eval()
    try:
        return _compare(student, model, directory, native and student.config.layer_norm_first)
    finally:
        if not native:
            _forget_module(type(model).__module__)


def _forget_module(name: str) -> None:
    """Drop the copy of the generated code transformers made under its modules cache for the
    temporary directory, which no later load can name again."""
    package = name.rsplit(".", 2)[0]  # transformers_modules.<directory name>(.<code hash>.<module>)
    folder = Path(sys.modules[name].__file__).parents[1]
    for module in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        del sys.modules[module]
    shutil.rmtree(folder, ignore_errors=True)


def _compare(student: Student, model: torch.nn.Module, directory: Path, pre_ln: bool) -> dict[str, float]:
    wav = torch.randn(2, SAMPLE_RATE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = student(wav).hidden_states
    theirs = _hidden(model, wav, None, pre_ln)
    unpadded = max(float((a - b).abs().max()) for a, b in zip(ours, theirs))
    if len(ours) != len(theirs) or not unpadded <= TOLERANCE:
        raise RuntimeError(f"{directory}: transformers' hidden states differ from the student's by {unpadded:.3g}")
    short = int(0.6 * SAMPLE_RATE)
    mask = torch.ones(2, SAMPLE_RATE, dtype=torch.long)
    mask[1, short:] = 0
    padded = _hidden(model, wav * mask, mask, pre_ln)
    alone = _hidden(model, wav[1:, :short], None, pre_ln)
    frames = alone[0].shape[1]
    padding = max(float((a[1, :frames] - b[0]).abs().max()) for a, b in zip(padded, alone))
    return {"unpadded": unpadded, "padded": padding}


@contextmanager
def _no_progress_bars() -> Iterator[None]:
    """transformers' save/load progress bars would drown the command's one line of output."""
    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            hf_logging.enable_progress_bar()


def _read_info(directory: Path) -> dict:
    path = directory / INFO_NAME
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON: {err}") from None


def export(student_dir: str | Path, out: str | Path, args: argparse.Namespace | None = None) -> Path:
    """Write the transformers directory ``out`` for the student at ``student_dir`` (a path or Hub id)."""
    source = resolve_pretrained(student_dir, "student")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out}: exists and is not an empty directory; give a new output directory")
    student = Student.from_pretrained(source).eval()
    info = _read_info(source)
    # OUT appears only once complete and checked
    with atomic_directory(out) as work, _no_progress_bars():
        _write(student, source, info, work, out.name, list(getattr(args, "probes", None) or []))
    return out


def _write(student: Student, source: Path, info: dict, work: Path, name: str, probes: list[str]) -> None:
    cfg = student.config
    backbone, heads = split_heads(student.state_dict())
    (_write_native if is_native(cfg) else _write_remote)(student, backbone, work)
    if heads:
        _write_heads(cfg, heads, work)
    normalize = teacher_normalize(info)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0,
                             do_normalize=bool(normalize), return_attention_mask=True).save_pretrained(work)
    if info:
        shutil.copyfile(source / INFO_NAME, work / INFO_NAME)
    facts = CardFacts(
        name=name, native=is_native(cfg), config=cfg, info=model_info(student), distill=info,
        normalize=normalize, checks=check_export(student, work), tolerance=TOLERANCE,
        probes=probe_results(student, source, probes),
    )
    (work / "README.md").write_text(model_card(facts))
