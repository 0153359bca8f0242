"""What every benchmark script reports alike: the device's name, the machine's load, the JSON file."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import torch


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def load_average() -> list[float]:
    """The 1-, 5- and 15-minute load averages (what else ran on a shared machine)."""
    return [round(v, 2) for v in os.getloadavg()]


def write_json(report: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")


def emit(report: dict[str, Any], out: Path | None) -> None:
    """Print the report as JSON and write it to ``out`` when given."""
    print(json.dumps(report, indent=2))
    if out is not None:
        write_json(report, out)
