"""Our students and teachers as s3prl upstreams (its ``UpstreamExpert`` contract).

s3prl's downstream runner builds an upstream as ``Upstream(ckpt=..., model_config=...,
refresh=...)``, calls it on a list of 1-D 16 kHz waveforms and expects a dict whose
``hidden_states`` is a list of ``[batch, frames, dim]`` tensors; its Featurizer reads
``get_downsample_rates(key)`` and cuts utterance ``i`` to ``round(len_i / rate)`` frames,
tolerating a few frames of difference. The wrapped model sees the true lengths, so each
utterance's valid frames are those it has alone; frames past them are zeros, so the one extra
frame the Featurizer's rounding may take carries nothing.

Nothing here imports s3prl: the class only has to quack like its upstreams.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence

from armdistill.config import ConfigError
from armdistill.errors import expected
from armdistill.eval.upstream import StudentFeatures, StudentUpstream, TeacherUpstream, load_upstream
from armdistill.frames import padding_mask

log = logging.getLogger(__name__)


class S3PRLUpstream(nn.Module):
    """``upstream(wavs: list of [samples]) -> {"hidden_states": [[batch, frames, dim], ...],
    "last_hidden_state": [batch, frames, dim]}`` for a student (its layer outputs, or its
    projection-head outputs) or a teacher (encoder input and every layer's output)."""

    def __init__(self, upstream: StudentUpstream | TeacherUpstream):
        super().__init__()
        if isinstance(upstream, StudentUpstream):
            self.model: nn.Module = upstream.student
            self.features: str | None = upstream.features
            self.downsample = int(upstream.student.config.downsample)
        elif isinstance(upstream, TeacherUpstream):
            self.model = upstream.teacher
            self.features = None
            self.downsample = int(upstream.teacher.downsample)
        else:
            raise ConfigError(f"s3prl upstream: {upstream.name!r} is a baseline; s3prl has its own "
                             "(-u fbank / mfcc), use those")
        self.name = upstream.name
        self.layer_names = list(upstream.layer_names)
        self.fingerprint = upstream.fingerprint()
        self.model.requires_grad_(False)
        self.train(False)
        log.info("armdistill upstream %s: %d feature sequences (%s), fingerprint %s", self.name,
                 len(self.layer_names), self.features or "teacher layers", self.fingerprint)

    def train(self, mode: bool = True) -> "S3PRLUpstream":
        """The wrapped model stays in eval mode: the runner switches upstreams to train mode in
        some set-ups, and a frozen upstream must not see dropout (SUPERB probes frozen features)."""
        super().train(mode)
        self.model.eval()
        return self

    def get_downsample_rates(self, key: str) -> int:
        """Samples per frame for every feature key (320 for the wav2vec 2.0 CNN)."""
        return self.downsample

    def record(self) -> dict[str, Any]:
        """What determines the features, for the experiment's record."""
        return {"upstream": self.name, "features": self.features or "teacher", "fingerprint": self.fingerprint,
                "layer_names": self.layer_names, "downsample_rate": self.downsample}

    def forward(self, wavs: list[Tensor]) -> dict[str, Tensor | list[Tensor]]:
        if not wavs or any(w.dim() != 1 for w in wavs):
            raise ValueError(f"s3prl upstream: expected a non-empty list of 1-D waveforms, got shapes "
                             f"{[tuple(w.shape) for w in wavs]}")
        lengths = torch.tensor([w.shape[0] for w in wavs], device=wavs[0].device)
        wav = pad_sequence(list(wavs), batch_first=True).float()
        if self.features is None:
            out = self.model.layer_outputs(wav, lengths)
            states = list(out.hidden_states)
        else:
            out = self.model(wav, lengths)
            states = list(out.hidden_states if self.features == "hidden" else out.projections)
        pad = padding_mask(out.lengths.to(states[0].device), states[0].shape[1])[..., None]
        states = [s.masked_fill(pad, 0.0) for s in states]
        return {"hidden_states": states, "last_hidden_state": states[-1]}


def load_s3prl_upstream(spec: str | Path, features: StudentFeatures = "hidden") -> S3PRLUpstream:
    """A student directory or preset, or a teacher source (see ``load_upstream``), wrapped."""
    return S3PRLUpstream(load_upstream(spec, features))


def upstream_factory(spec: str | Path, features: StudentFeatures = "hidden",
                     prebuilt: S3PRLUpstream | None = None) -> Callable[..., S3PRLUpstream]:
    """The callable to register in ``s3prl.hub``: the runner calls it with ``ckpt`` (``-k``),
    ``model_config`` (``-g``, unused) and ``refresh``. ``prebuilt`` is returned for ``spec``
    itself, so a model checked before the runner starts is not loaded twice."""

    def build(ckpt: str | None = None, model_config: str | None = None, refresh: bool = False,
              **kwargs: Any) -> S3PRLUpstream:
        if kwargs:
            log.warning("armdistill upstream ignores s3prl upstream options %s", sorted(kwargs))
        source = spec if ckpt is None else ckpt
        if prebuilt is not None and str(source) == str(spec):
            return prebuilt
        return load_s3prl_upstream(source, features)

    return build


def register_upstream(hub: Any, name: str, factory: Callable[..., S3PRLUpstream]) -> None:
    """Make ``-u name`` resolve to ``factory`` in s3prl's hub (``getattr(hub, name)``), refusing
    to shadow one of s3prl's own upstreams."""
    if not name.isidentifier() or name.startswith("_"):
        raise ConfigError(expected("--name", "a Python identifier not starting with '_'", name))
    existing = getattr(hub, name, None)
    if existing is not None and not getattr(existing, "_armdistill", False):
        raise ConfigError(f"upstream name {name!r} is already an s3prl upstream; choose another --name")
    factory._armdistill = True  # type: ignore[attr-defined]
    setattr(hub, name, factory)
