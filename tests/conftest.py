"""Fixtures shared across test modules: built once per test run."""

from __future__ import annotations

from pathlib import Path

import pytest

from _distill_helpers import make_workdir


@pytest.fixture(scope="session")
def tiny_work(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny random teacher with generated training and held-out data (see ``make_workdir``)."""
    return make_workdir(tmp_path_factory.mktemp("tiny-work"))
