"""Typed configuration: dataclasses built from dicts / YAML with strict validation.

Every error names the dotted key at fault, so a typo in a recipe is caught before anything
is loaded. Values are converted by their annotated type only; nothing is ever evaluated.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from armdistill.errors import UserError, expected

T = TypeVar("T")

# YAML 1.1 (PyYAML) reads "5e-3" as a string; numbers in that form are still numbers here.
_FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
_INT64 = 2**63
# A YAML file whose aliases expand to more values than this is refused (a "billion laughs" file
# would otherwise take all memory when expanded).
MAX_YAML_VALUES = 100_000


class ConfigError(UserError, ValueError):
    """A configuration value or key is invalid; the message names the key."""


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _convert(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {value!r} matches none of {tp}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(expected(key, f"one of {list(args)}", value))
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return from_dict(tp, value, prefix=key)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{key}: expected {len(args)} items, got {len(value)}")
            return tuple(_convert(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        items = [_convert(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        if not -_INT64 <= value < _INT64:
            raise ConfigError(f"{key}: expected a 64-bit integer, got {value!r}")
        return value
    if tp is float:
        text = isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip())
        if not text and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return number
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported config type {tp}")


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted((k for k in data if k not in fields), key=str)
    if unknown:
        raise ConfigError(
            f"unknown config key {_join(prefix, unknown[0])!r}; valid keys here: {sorted(fields)}"
        )
    kwargs = {name: _convert(hints[name], value, _join(prefix, name)) for name, value in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"{prefix or cls.__name__}: {err}") from None
    except ConfigError as err:
        # A section's own validation names its field (or itself and its field); give the full
        # dotted key once.
        msg = str(err)
        if not prefix or msg.startswith(prefix + "."):
            raise
        parent, _, last = prefix.rpartition(".")
        key = _join(parent, msg) if msg.startswith(last + ".") else f"{prefix}.{msg}"
        raise ConfigError(key) from None


def to_dict(obj: Any) -> Any:
    """Plain-data form of a config (tuples become lists) for JSON / YAML."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def _check_tree(data: Any, where: str) -> None:
    """Refuse YAML whose aliases make a value contain itself or expand past :data:`MAX_YAML_VALUES`."""
    count = 0
    stack: list[tuple[Any, frozenset[int]]] = [(data, frozenset())]
    while stack:
        node, ancestors = stack.pop()
        count += 1
        if count > MAX_YAML_VALUES:
            raise ConfigError(f"{where}: expands to more than {MAX_YAML_VALUES} values (YAML aliases of aliases?)")
        if isinstance(node, (dict, list)):
            if id(node) in ancestors:
                raise ConfigError(f"{where}: a YAML alias makes a value contain itself (recursive alias)")
            children = [*node.keys(), *node.values()] if isinstance(node, dict) else node
            stack.extend((child, ancestors | {id(node)}) for child in children)


def _parse_yaml(text: str, where: str) -> Any:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{where}: not valid YAML: {' '.join(str(err).split())}") from None
    except (ValueError, OverflowError) as err:  # raised by PyYAML's constructors, e.g. for a date like 2001-02-30
        raise ConfigError(f"{where}: a value YAML cannot represent: {err}") from None
    except RecursionError:
        raise ConfigError(f"{where}: YAML nested too deeply") from None
    _check_tree(data, where)
    return data


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML file's top-level mapping; every fault of the file is a ConfigError naming it."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory; expected a YAML file") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start}); expected a YAML file") from None
    data = _parse_yaml(text, str(path))
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (values parsed as YAML scalars/lists) to a nested dict."""
    out = to_dict(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        value = _parse_yaml(raw, f"override {item!r}") if raw else ""
        node = out
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {key!r}: {'.'.join(parts[: i + 1])} is not a section")
            node = child
        node[parts[-1]] = value
    return out
