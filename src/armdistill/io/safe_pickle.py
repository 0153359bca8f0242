"""One restricted unpickler for every foreign checkpoint the project reads.

Released students (Lightning ``.ckpt``), fairseq HuBERT / wav2vec 2.0 and unilm WavLM ``.pt``
files are pickles that also carry objects of other packages (fairseq dictionaries, omegaconf
configs, optimiser states). ``torch.load(weights_only=True)`` refuses them, and a plain
``torch.load`` would run whatever they name. Here only tensors, storages, plain containers and
a few value types are rebuilt for real; classes of known checkpoint-metadata packages become
inert stand-ins that merely hold their pickled state; any other global is refused before
anything runs.
"""

from __future__ import annotations

import collections
import pickle
import types
from pathlib import Path
from typing import Any

import torch

# Packages whose classes appear as metadata in checkpoints we read: stood in for, never imported.
STANDIN_PACKAGES = ("fairseq", "omegaconf", "s3prl", "pytorch_lightning", "lightning", "lightning_fabric")

_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "defaultdict"): collections.defaultdict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("builtins", "complex"): complex,
    ("argparse", "Namespace"): __import__("argparse").Namespace,
    ("pathlib", "PosixPath"): Path,
    ("pathlib", "WindowsPath"): Path,
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
    ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
}
_ALLOWED.update({("torch", name): getattr(torch, name) for name in dir(torch) if isinstance(getattr(torch, name, None), torch.dtype)})


def _numpy_allowed() -> dict[tuple[str, str], Any]:
    import numpy as np

    multiarray = (getattr(np, "_core", None) or np.core).multiarray
    out = {}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        out[(mod, "_reconstruct")] = multiarray._reconstruct
        out[(mod, "scalar")] = multiarray.scalar
    out[("numpy", "ndarray")] = np.ndarray
    out[("numpy", "dtype")] = np.dtype
    for name in ("float64", "float32", "int64", "int32", "bool_"):
        out[("numpy", name)] = getattr(np, name)
    for name in ("Float64DType", "Float32DType", "Int64DType", "Int32DType", "BoolDType"):
        if hasattr(np.dtypes, name):
            out[("numpy.dtypes", name)] = getattr(np.dtypes, name)
    return out


class UnsafeCheckpointError(pickle.UnpicklingError):
    """The file names a global outside the allow-list; nothing from it was executed."""


class StandIn:
    """Inert replacement for a foreign class: records constructor args and pickled state."""

    def __new__(cls, *args: Any, **kwargs: Any) -> "StandIn":
        obj = object.__new__(cls)
        obj.__dict__.update(_args=args, _kwargs=kwargs, _state=None, _items={}, _list=[])
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.__dict__["_state"] = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self._items[key] = value

    def append(self, value: Any) -> None:
        self._list.append(value)

    def extend(self, values: Any) -> None:
        self._list.extend(values)

    def __getattr__(self, name: str) -> Any:
        state = self.__dict__.get("_state")
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
            state = {**(state[0] or {}), **state[1]}
        if isinstance(state, dict) and name in state:
            return state[name]
        raise AttributeError(f"{type(self).__module__}.{type(self).__name__} stand-in has no {name!r}")

    def __repr__(self) -> str:
        return f"<stand-in for {type(self).__module__}.{type(self).__name__}>"


_STANDINS: dict[tuple[str, str], type] = {}


def _standin(module: str, name: str) -> type:
    key = (module, name)
    if key not in _STANDINS:
        _STANDINS[key] = type(name, (StandIn,), {"__module__": module, "__qualname__": name})
    return _STANDINS[key]


class RestrictedUnpickler(pickle.Unpickler):
    allowed = {**_ALLOWED, **_numpy_allowed()}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.allowed:
            return self.allowed[(module, name)]
        if module.split(".")[0] in STANDIN_PACKAGES:
            return _standin(module, name)
        raise UnsafeCheckpointError(
            f"refusing to load global {module}.{name}: only tensors, containers and metadata of "
            f"{', '.join(STANDIN_PACKAGES)} are allowed in a checkpoint"
        )


restricted_pickle = types.ModuleType("armdistill_restricted_pickle")
restricted_pickle.Unpickler = RestrictedUnpickler
restricted_pickle.load = lambda f, **kw: RestrictedUnpickler(f, **kw).load()
restricted_pickle.__name__ = "armdistill_restricted_pickle"


def safe_torch_load(path: str | Path) -> Any:
    """``torch.load`` through the restricted unpickler, on CPU; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=restricted_pickle)
    except UnsafeCheckpointError as err:
        raise UnsafeCheckpointError(f"{path}: {err}") from None
