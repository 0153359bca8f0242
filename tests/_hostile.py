"""Hostile checkpoints: each writes a marker file if anything in it ever runs."""

from __future__ import annotations

from pathlib import Path

import torch


class _Exec:
    """Pickles as ``builtins.exec(code)``: loading it with a plain unpickler writes the marker."""

    def __init__(self, marker: Path):
        self.code = f"open({str(marker)!r}, 'w').write('ran')"

    def __reduce__(self):
        return exec, (self.code,)


class _ScriptedExploit(torch.nn.Module):
    """A TorchScript module whose ``__setstate__`` (run by ``torch.jit.load``) creates the marker."""

    def __init__(self, marker: str):
        super().__init__()
        self.marker = marker
        self.buf = torch.zeros(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @torch.jit.export
    def __getstate__(self) -> tuple[str, bool]:
        return (self.marker, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool]) -> None:
        self.marker = state[0]
        self.training = state[1]
        # from_file with shared=True creates the file: a visible side effect of code in the archive
        self.buf = torch.from_file(state[0], True, 1)


def write_pickle_exploit(path: Path, marker: Path, state: dict | None = None) -> Path:
    """A torch.save zip whose pickle calls ``builtins.exec`` (beside ``state``)."""
    torch.save({**(state or {}), "payload": _Exec(marker)}, path)
    return path


def write_torchscript_exploit(path: Path, marker: Path) -> Path:
    """``torch.jit.save`` of a module that writes ``marker`` when loaded."""
    torch.jit.save(torch.jit.script(_ScriptedExploit(str(marker))), str(path))
    assert not marker.exists()
    return path


def marker_runs_when_loaded_unsafely(path: Path, marker: Path) -> bool:
    """Whether ``path`` does write ``marker`` under a plain ``torch.load`` (the exploit is live)."""
    torch.load(path, weights_only=False)
    ran = marker.exists()
    marker.unlink(missing_ok=True)
    return ran
