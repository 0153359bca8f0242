"""transformers model directories, read without unpickling anything through torch's own loader.

safetensors weights are handed to transformers with ``use_safetensors=True``, so it never opens
a pickle in the directory. A directory with only ``pytorch_model.bin`` is read through
:func:`armdistill.io.safe_pickle.safe_torch_load` (tensors and containers only) and the tensors
are given to transformers as a state dict, which keeps its renames of legacy weight names.
Missing or mis-shaped weights are errors, never silently re-initialised, and a ``config.json``
that names model code of its own (``auto_map``) is refused: that code is never run.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import SafetensorError
from torch import Tensor
from transformers import AutoConfig, PreTrainedModel
from transformers.models.auto.modeling_auto import MODEL_MAPPING

from armdistill.errors import FileFormatError, MissingFileError, RefusedError, UserError
from armdistill.io.safe_pickle import safe_torch_load

CONFIG_FILE = "config.json"
SAFETENSORS_FILES = ("model.safetensors", "model.safetensors.index.json")
PICKLED_WEIGHTS = "pytorch_model.bin"
SHARDED_PICKLED_WEIGHTS = "pytorch_model.bin.index.json"
# What transformers raises on a config or weights file it cannot use.
_LOAD_ERRORS = (OSError, ValueError, KeyError, TypeError, RuntimeError, ImportError, SafetensorError)


def _brings_own_code(config_path: Path) -> bool:
    """Whether a transformers ``config.json`` names model code of its own (an ``auto_map``)."""
    try:
        return "auto_map" in json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError):
        return False  # transformers reports a broken config.json itself


def _pickled_state(path: Path) -> dict[str, Tensor]:
    state = safe_torch_load(path, standins=False)
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise FileFormatError(f"{path}: expected a state dict of tensors")
    return state


def load_model_dir(directory: Path) -> PreTrainedModel:
    """The wav2vec 2.0-family transformers model saved in ``directory``, in eval mode."""
    config_path = directory / CONFIG_FILE
    if not config_path.is_file():
        raise MissingFileError(f"{directory}: no {CONFIG_FILE} (expected a transformers model directory)")
    if _brings_own_code(config_path):
        raise RefusedError(f"{config_path}: auto_map names model code of its own, which is never run; a teacher "
                           "is a model of transformers itself (an armdistill ARM export loads with "
                           "Student.from_pretrained)")
    try:
        config = AutoConfig.from_pretrained(directory)
    except _LOAD_ERRORS as err:
        raise FileFormatError(f"{config_path}: not a transformers model config ({err})") from None
    model_cls = MODEL_MAPPING.get(type(config), None)
    if model_cls is None:
        raise FileFormatError(f"{config_path}: transformers has no model for model_type {config.model_type!r}")
    options = {"config": config, "output_loading_info": True, "ignore_mismatched_sizes": True}
    try:
        if any((directory / name).is_file() for name in SAFETENSORS_FILES):
            model, info = model_cls.from_pretrained(directory, use_safetensors=True, **options)
        elif (directory / PICKLED_WEIGHTS).is_file():
            state = _pickled_state(directory / PICKLED_WEIGHTS)
            model, info = model_cls.from_pretrained(None, state_dict=state, **options)
        elif (directory / SHARDED_PICKLED_WEIGHTS).is_file():
            raise FileFormatError(
                f"{directory}: sharded pickled weights ({SHARDED_PICKLED_WEIGHTS}) are not read; "
                f"save the model with safetensors (save_pretrained's default) or as one {PICKLED_WEIGHTS}"
            )
        else:
            raise MissingFileError(f"{directory}: no weights ({SAFETENSORS_FILES[0]} or {PICKLED_WEIGHTS})")
    except UserError:
        raise
    except _LOAD_ERRORS as err:
        raise FileFormatError(f"{directory}: the weights do not load into {model_cls.__name__} ({err})") from None
    problems = [f"missing {k}" for k in sorted(info["missing_keys"])]
    problems += [f"{k}: {tuple(a)} in the file, {tuple(b)} by {CONFIG_FILE}" for k, a, b in sorted(info["mismatched_keys"])]
    if problems:
        raise FileFormatError(
            f"{directory}: the weights do not match {CONFIG_FILE} ({len(problems)} tensors): {'; '.join(problems[:3])}"
        )
    return model.eval()
