"""Validation checks that word every failure one way: ``KEY: expected WHAT, got VALUE``.

KEY is what the user gave (a config key, CLI flag, file path or argument), WHAT what was
expected and VALUE what was given, repr'd. Every side of the package imports this module (the
student too), so it depends on nothing but :mod:`armdistill.config` and :mod:`armdistill.errors`.
Config checks raise :class:`ConfigError` by default; argument checks pass ``error=ValueError``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

from armdistill.config import ConfigError
from armdistill.errors import expected

if TYPE_CHECKING:
    import torch
    from torch import Tensor


def _bounds(gt: float | None, ge: float | None, lt: float | None, le: float | None) -> str:
    """The bounds as a reader writes them: ``> 0``, ``>= 1``, ``in [0, 1)``, ``in (0, 8000)``."""
    low = f"({gt:g}" if gt is not None else f"[{ge:g}" if ge is not None else ""
    high = f"{lt:g})" if lt is not None else f"{le:g}]" if le is not None else ""
    if low and high:
        return f"in {low}, {high}"
    op, bound = next((op, b) for op, b in ((">", gt), (">=", ge), ("<", lt), ("<=", le)) if b is not None)
    return f"{op} {bound:g}"


def check_range(
    key: str,
    value: float | None,
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
    null: bool = False,
    error: type[Exception] = ConfigError,
) -> None:
    """Raise ``error`` unless ``value`` lies within the bounds (``gt``: above, ``ge``: at least,
    ``lt``: below, ``le``: at most); ``null=True`` also accepts None (e.g. "no limit").

    ``check_range("dropout", 1.5, ge=0, lt=1)`` -> ``dropout: expected a value in [0, 1), got 1.5``.
    """
    if value is None and null:
        return
    if value is None or not (
        (gt is None or value > gt) and (ge is None or value >= ge) and (lt is None or value < lt) and (le is None or value <= le)
    ):
        raise error(expected(key, f"a value {_bounds(gt, ge, lt, le)}{' or null' if null else ''}", value))


def check_choice(key: str, value: object, choices: Collection[object], *, error: type[Exception] = ConfigError) -> None:
    """Raise ``error`` unless ``value`` is one of ``choices`` (listed in the message in their order)."""
    if value not in choices:
        raise error(expected(key, f"one of {list(choices)}", value))


def check_shape(
    key: str,
    tensor: Tensor,
    shape: Sequence[int | str],
    *,
    dtype: torch.dtype | None = None,
    error: type[Exception] = ValueError,
) -> None:
    """Raise ``error`` unless ``tensor`` has one dimension per entry of ``shape``, of that size
    (an int) or of any size (a str naming the dimension), and, when given, dtype ``dtype``.

    ``check_shape("wav", x, ("batch", "samples"))`` -> ``wav: expected shape [batch, samples], got [16000]``.
    """
    got = list(tensor.shape)
    if len(got) != len(shape) or any(isinstance(want, int) and want != n for want, n in zip(shape, got)):
        raise error(expected(key, f"shape [{', '.join(str(d) for d in shape)}]", got))
    if dtype is not None and tensor.dtype != dtype:
        raise error(expected(key, f"dtype {dtype}", tensor.dtype))
