"""Probe feature extraction in length-sorted padded batches equals one utterance at a time;
thread counts follow the machine's load."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import soundfile as sf
import torch

import armdistill
from armdistill.config import ConfigError
from armdistill.data.manifest import write_manifest
from armdistill.eval.cache import default_batch_seconds, extract_features, load_or_extract
from armdistill.eval.probe import ProbeConfig
from armdistill.eval.upstream import BaselineUpstream, StudentUpstream, TeacherUpstream, Upstream
from armdistill.models.student import Student
from armdistill.teachers import Teacher, make_random_model
from armdistill.threads import auto_threads, free_cores, torch_threads

SECONDS = [0.9, 2.1, 0.45, 1.6, 1.55, 3.0, 0.7]


def _wavs(seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [0.1 * torch.randn(int(s * 16000), generator=generator) for s in SECONDS]


class Counting:
    """Wraps an upstream, counting batched and single calls."""

    def __init__(self, inner: Upstream):
        self.inner, self.batches, self.singles = inner, 0, 0
        self.padding_exact = inner.padding_exact

    def extract(self, wav: torch.Tensor) -> torch.Tensor:
        self.singles += 1
        return self.inner.extract(wav)

    def extract_batch(self, wav: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        self.batches += 1
        return self.inner.extract_batch(wav, lengths)


UPSTREAMS = {
    "student": lambda: StudentUpstream(Student.from_preset("tiny-arm")),
    "student-projections": lambda: StudentUpstream(Student.from_preset("tiny-arm"), "projections"),
    "hubert": lambda: TeacherUpstream(Teacher(make_random_model("hubert", seed=1))),
    "wavlm": lambda: TeacherUpstream(Teacher(make_random_model("wavlm", seed=2))),
    "shipped-teacher": lambda: TeacherUpstream(Teacher.from_pretrained(armdistill.DEFAULT_TEACHER)),
}


@pytest.mark.parametrize("name", list(UPSTREAMS))
def test_batched_features_equal_one_at_a_time(name: str) -> None:
    torch.manual_seed(0)
    upstream = Counting(UPSTREAMS[name]())
    wavs = _wavs()
    alone = [upstream.inner.extract(w) for w in wavs]
    batched = extract_features(upstream, wavs, batch_seconds=4.0)
    # at most 4 s of padded audio per batch, by length: [0.45, 0.7, 0.9], [1.55, 1.6], [2.1], [3.0]
    assert upstream.batches == 4 and upstream.singles == 0
    for a, b in zip(alone, batched, strict=True):
        assert a.shape == b.shape
        assert (a - b).abs().max().item() < 1e-5


def test_upstreams_that_are_not_padding_exact_run_one_at_a_time() -> None:
    release = Counting(StudentUpstream(Student.from_preset("tiny-arm", reuse_mode="release")))
    mfcc = Counting(BaselineUpstream("mfcc"))
    for upstream in (release, mfcc):
        feats = extract_features(upstream, _wavs(), batch_seconds=60.0)
        assert (upstream.batches, upstream.singles) == (0, len(SECONDS))
        assert torch.equal(feats[2], upstream.inner.extract(_wavs()[2]))


def test_cache_entries_equal_with_and_without_batching(tmp_path: Path) -> None:
    rows = []
    (tmp_path / "wav").mkdir()
    generator = torch.Generator().manual_seed(3)
    for i in range(70):  # more than one window of 64
        wav = 0.1 * torch.randn(4000 + 97 * (i % 11), generator=generator)
        sf.write(tmp_path / "wav" / f"{i}.wav", wav.numpy(), 16000)
        rows.append((f"{i}.wav", len(wav)))
    manifest = tmp_path / "m.tsv"
    write_manifest(manifest, tmp_path / "wav", rows)
    torch.manual_seed(0)
    upstream = StudentUpstream(Student.from_preset("tiny-arm"))
    one, _ = load_or_extract(upstream, manifest, tmp_path / "a", "float32", batch_seconds=1e-3, threads=1)
    many, _ = load_or_extract(upstream, manifest, tmp_path / "b", "float32", batch_seconds=30.0, threads=1)
    expected = upstream.student.frame_lengths(torch.tensor([n for _, n in rows]))
    assert torch.equal(one.lengths, expected) and torch.equal(many.lengths, expected)
    assert (one.features - many.features).abs().max().item() < 1e-5


def test_threads_follow_the_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (1.8, 1.0, 1.0))
    assert free_cores() == 1
    monkeypatch.setattr(os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    assert free_cores() == 1
    monkeypatch.setattr(os, "getloadavg", lambda: (0.1, 0.1, 0.1))
    assert free_cores() == 2
    with torch_threads(1):
        assert auto_threads() == 1  # never more than the caller allows
    with torch_threads(2):
        assert auto_threads() == 2
    before = torch.get_num_threads()
    with torch_threads(2):
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == before


def test_feature_settings_are_checked() -> None:
    for key, value in (("feature_threads", 0), ("feature_batch_seconds", 0.0), ("feature_device", "tpu9")):
        with pytest.raises(ConfigError, match=key):
            ProbeConfig.from_dict({key: value})
    assert ProbeConfig().feature_threads is None and ProbeConfig().feature_batch_seconds is None
    assert default_batch_seconds("cpu") < default_batch_seconds("cuda")
