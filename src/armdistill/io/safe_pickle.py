"""One entry point for every non-safetensors file the project reads: :func:`safe_torch_load`.

Released students (Lightning ``.ckpt``), fairseq HuBERT / wav2vec 2.0 and unilm WavLM ``.pt``
files are pickles that also carry objects of other packages (fairseq dictionaries, omegaconf
configs, optimiser states). ``torch.load(weights_only=True)`` refuses them, and a plain
``torch.load`` would run whatever they name. Here only tensors, storages, plain containers and
a few value types are rebuilt for real; classes of known checkpoint-metadata packages become
inert stand-ins that merely hold their pickled state; any other global is refused before
anything runs.

``torch.load`` hands any zip holding ``constants.pkl`` to ``torch.jit.load``, which runs the
TorchScript code inside (a module's ``__setstate__`` included) whatever ``pickle_module`` says.
So the archive's entries are read first, by the standard library and by torch's own zip reader,
and a zip carrying code, or one the two readers see differently, is refused before
``torch.load`` sees it.
"""

from __future__ import annotations

import collections
import pickle
import struct
import tarfile
import types
import zipfile
from pathlib import Path
from typing import IO, Any

import torch

from armdistill.errors import FileFormatError, MissingFileError, RefusedError

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


class UnsafeCheckpointError(RefusedError, pickle.UnpicklingError):
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
    """Allow-listed globals only; ``standins`` lets classes of :data:`STANDIN_PACKAGES` through as
    inert stand-ins (foreign checkpoints), otherwise they are refused too (our own files)."""

    allowed = {**_ALLOWED, **_numpy_allowed()}
    standins = True

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.allowed:
            return self.allowed[(module, name)]
        if self.standins and module.split(".")[0] in STANDIN_PACKAGES:
            return _standin(module, name)
        allowed = f"tensors, containers and metadata of {', '.join(STANDIN_PACKAGES)}" if self.standins else "tensors and containers"
        raise UnsafeCheckpointError(
            f"refusing to load global {module}.{name}: only {allowed} are allowed in this checkpoint; "
            "nothing from it was run"
        )


class PlainUnpickler(RestrictedUnpickler):
    standins = False


def _pickle_module(unpickler: type[RestrictedUnpickler]) -> types.ModuleType:
    """What ``torch.load(pickle_module=...)`` needs: ``Unpickler`` and ``load``."""
    module = types.ModuleType(f"armdistill_{unpickler.__name__}")
    module.Unpickler = unpickler
    module.load = lambda f, **kw: unpickler(f, **kw).load()
    return module


_PICKLE_MODULES = {True: _pickle_module(RestrictedUnpickler), False: _pickle_module(PlainUnpickler)}

# Entries by which a zip carries code: TorchScript (``code/``, ``constants.pkl``, mobile
# ``bytecode.pkl``, debug pickles) and torch.package (Python modules, ``.data/extern_modules``).
# torch.save writes one pickle, data.pkl; any other is code torch.jit.load would run.
_CODE_DIRS = ("code/", ".data/extern_modules")
_TORCHSCRIPT = ("constants.pkl", "bytecode.pkl")
# Errors torch.load raises on a damaged or foreign file (its own, pickle's, the rebuild helpers').
_CORRUPT = (RuntimeError, EOFError, pickle.UnpicklingError, ValueError, TypeError, KeyError, IndexError,
            AttributeError, OverflowError, struct.error)


def _code_entries(records: list[str]) -> list[str]:
    """The records (names inside the archive's top folder) that carry code."""
    return [
        r for r in records
        if r.startswith(_CODE_DIRS) or r.endswith((".py", ".debug_pkl")) or (r.endswith(".pkl") and r != "data.pkl")
    ]


def _zip_records(f: IO[bytes], path: Path) -> list[str]:
    """Names inside the archive's one top folder, as the standard library reads them."""
    try:
        with zipfile.ZipFile(f) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise FileFormatError(f"{path}: a damaged zip archive, not a readable checkpoint ({err})") from None
    finally:
        f.seek(0)
    if len({name.split("/", 1)[0] for name in names}) != 1 or not all("/" in name for name in names):
        raise FileFormatError(f"{path}: a zip archive without one top folder, not a PyTorch checkpoint")
    return [name.split("/", 1)[1] for name in names]


def check_archive(f: IO[bytes], path: Path) -> None:
    """Refuse what ``torch.load`` must not see: a zip carrying code (TorchScript, torch.package),
    a zip the standard library and torch read differently, and the legacy tar format.

    ``f`` is the open file ``torch.load`` reads next; it is left at its start.
    """
    head = f.read(4)
    f.seek(0)
    if head == b"PK\x03\x04":  # torch's own test for its zip format, whatever the rest says
        records = _zip_records(f, path)
        code = _code_entries(records)
        if code:
            torchscript = any(r in _TORCHSCRIPT or r.startswith("code/") for r in records)
            kind = "a TorchScript archive" if torchscript else "a zip archive carrying code"
            raise RefusedError(
                f"{path}: refused: {kind} ({', '.join(sorted(code)[:3])}); loading it would run the code it "
                "carries, so it is not read and nothing from it was run. Give the checkpoint as torch.save "
                "writes it (a state dict), or a safetensors file"
            )
        # torch's zip reader (what decides torch.load's dispatch) must see the same entries
        try:
            seen_by_torch = set(torch._C.PyTorchFileReader(f).get_all_records())
        except RuntimeError as err:
            raise FileFormatError(f"{path}: a zip archive torch cannot read, not a PyTorch checkpoint ({err})") from None
        finally:
            f.seek(0)
        if seen_by_torch != set(records):
            raise RefusedError(f"{path}: refused: a zip archive whose entries the standard library and torch read "
                               "differently; it is not read and nothing from it was run")
        if "data.pkl" not in records:
            raise FileFormatError(f"{path}: a zip archive without data.pkl, not a PyTorch checkpoint")
        return
    try:
        with tarfile.open(fileobj=f, mode="r:"):
            pass
    except tarfile.TarError:
        return
    finally:
        f.seek(0)
    raise FileFormatError(f"{path}: a legacy tar-format PyTorch checkpoint (before PyTorch 0.4), which is not "
                          "read; re-save it with a current torch.save")


def safe_torch_load(path: str | Path, standins: bool = True) -> Any:
    """Load a checkpoint on CPU after :func:`check_archive`, through the restricted unpickler.

    ``standins``: classes of checkpoint-metadata packages become inert stand-ins (foreign
    checkpoints); False refuses them too (our own checkpoints, transformers ``pytorch_model.bin``).
    Every failure is a :class:`UserError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such checkpoint file")
    with path.open("rb") as f:
        check_archive(f, path)
        try:
            return torch.load(f, map_location="cpu", weights_only=False, pickle_module=_PICKLE_MODULES[standins])
        except UnsafeCheckpointError as err:
            raise UnsafeCheckpointError(f"{path}: {err}") from None
        except _CORRUPT as err:
            raise FileFormatError(f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}: {err})") from err
