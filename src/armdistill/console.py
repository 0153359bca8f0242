"""The console is ours: known library noise hidden (``--verbose`` shows it again), and the same
settings carried into worker processes, which start with Python's defaults."""

from __future__ import annotations

import logging
import warnings
from typing import Any

# Library messages that say nothing to a user of ours; shown again with --verbose.
LIBRARY_NOISE = (
    r".*LeafSpec.*",  # torch's pytree deprecation, raised from inside Lightning
    r".*mismatched key_padding_mask and attn_mask.*",  # torch, from transformers' WavLM
)
LIBRARY_LOGGERS = ("lightning.pytorch", "lightning.fabric", "transformers")

ConsoleState = tuple[list[Any], dict[str, int]]


def quiet_libraries() -> None:
    """Hide known library noise and libraries' info chatter."""
    for pattern in LIBRARY_NOISE:
        warnings.filterwarnings("ignore", message=pattern)
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def console_state() -> ConsoleState:
    """This process's warning filters and library log levels, to hand to a worker."""
    return list(warnings.filters), {name: logging.getLogger(name).level for name in LIBRARY_LOGGERS}


def apply_console_state(state: ConsoleState) -> None:
    """A worker's initializer: the parent's :func:`console_state`."""
    filters, levels = state
    warnings.filters[:] = filters
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
