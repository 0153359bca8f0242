"""Session-wide fixtures: the tiny distillation setup and its uninterrupted reference run."""

from __future__ import annotations

from pathlib import Path

import pytest

from _distill_helpers import REFERENCE, TINY_RECIPE, make_workdir, overrides


@pytest.fixture(scope="session")
def distill_work(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny random teacher, 16 training clips and 2 held-out clips (see ``make_workdir``)."""
    return make_workdir(tmp_path_factory.mktemp("distill"))


@pytest.fixture(scope="session")
def distill_reference(distill_work: dict[str, Path]) -> Path:
    """An uninterrupted run of the tiny recipe with ``REFERENCE`` (a checkpoint every step)."""
    from armdistill.distill.config import load_config
    from armdistill.distill.train import run_distillation

    out = distill_work["train"].parent / "reference"
    run_distillation(load_config(TINY_RECIPE, overrides(distill_work, out, *REFERENCE)))
    return out
