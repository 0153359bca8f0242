"""Probes: metrics on hand examples, heads that learn planted signals and fail on noise,
the feature cache, upstream adapters and the ``probe`` command."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from armdistill.config import ConfigError
from armdistill.data.manifest import write_manifest
from armdistill.eval import commands
from armdistill.eval.cache import FeatureSet, load_or_extract
from armdistill.eval.heads import WeightedSum
from armdistill.eval.metrics import (
    accuracy,
    chars_to_words,
    ctc_greedy_decode,
    edit_distance,
    error_rate,
    words_to_chars,
)
from armdistill.eval.probe import ProbeConfig, Split, _Runner, run_probe
from armdistill.eval.upstream import BaselineUpstream, StudentUpstream, TeacherUpstream, load_upstream
from armdistill.models.student import Student
from armdistill.teachers import make_random_teacher

PHONES = ["AA", "B", "K", "D", "EH", "F"]
FREQS = [300.0, 700.0, 1200.0, 1900.0, 2800.0, 4000.0]


def tone_corpus(root: Path, name: str, n: int, seed: int, noise: bool = False) -> Path:
    """Utterances whose phones are tones (3-5 frames each, a silent frame between); with
    ``noise`` the audio is white noise and the labels carry no signal."""
    rng = np.random.default_rng(seed)
    root = root.resolve()
    (root / "wav").mkdir(parents=True, exist_ok=True)
    rows, phn = [], []
    for i in range(n):
        seq = rng.integers(0, len(PHONES), size=rng.integers(4, 9))
        parts = [np.zeros(480)]
        for p in seq:
            t = np.arange(int(rng.integers(3, 6)) * 320) / 16000
            parts += [0.5 * np.sin(2 * np.pi * FREQS[p] * t), np.zeros(320)]
        wav = np.concatenate(parts + [np.zeros(480)])
        wav = 0.3 * rng.standard_normal(wav.size) if noise else wav + 0.01 * rng.standard_normal(wav.size)
        rel = f"wav/{name}-{i}.wav"
        sf.write(root / rel, wav.astype(np.float32), 16000)
        rows.append((rel, wav.size))
        phn.append(" ".join(PHONES[p] for p in seq))
    write_manifest(root / f"{name}.tsv", root, rows)
    (root / f"{name}.phn").write_text("\n".join(phn) + "\n")
    return root / f"{name}.tsv"


def splits(root: Path, noise: bool = False) -> tuple[Path, Path, Path]:
    return tuple(tone_corpus(root, name, n, seed, noise) for name, n, seed in
                 (("train", 48, 0), ("valid", 12, 1), ("test", 12, 2)))


def planted_split(num_utts: int, seed: int, signal: bool, classes: int = 5, dim: int = 16,
                  layers: int = 3) -> tuple[FeatureSet, list[list[str]], list[str]]:
    """Features whose layer 1 holds a code of each frame's phone and, at half strength, of the
    utterance's speaker (+ unit noise); the other layers, or every layer without ``signal``, are
    noise. Phones last 3 frames with a blank frame after each. Returns features, phones, speakers."""
    codes = torch.randn(2, classes, dim, generator=torch.Generator().manual_seed(123)) * 3
    g = torch.Generator().manual_seed(seed)
    chunks, lengths, phones, speakers = [], [], [], []
    for _ in range(num_utts):
        seq = torch.randint(0, classes, (int(torch.randint(3, 7, (1,), generator=g)),), generator=g).tolist()
        speaker = int(torch.randint(0, classes, (1,), generator=g))
        frames = [f for p in seq for f in (p, p, p, None)]
        x = torch.randn(layers, len(frames), dim, generator=g)
        if signal:
            x[1] += 0.5 * codes[1, speaker]
            for t, p in enumerate(frames):
                if p is not None:
                    x[1, t] += codes[0, p]
        chunks.append(x)
        lengths.append(len(frames))
        phones.append([f"p{p}" for p in seq])
        speakers.append(f"spk{speaker}")
    feats = FeatureSet(torch.cat(chunks, dim=1), torch.tensor(lengths), [f"l{i}" for i in range(layers)])
    return feats, phones, speakers


@pytest.fixture(autouse=True)
def one_thread():
    """The probes are tiny; on a shared 2-core machine intra-op threads only add contention."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- metrics ------------------------------------------------------------------------


def test_edit_distance_and_error_rates_on_hand_examples() -> None:
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance([], ["a", "b"]) == 2
    assert edit_distance(["a", "b", "c"], ["a", "b", "c"]) == 0
    # PER: 1 substitution + 1 deletion over 3 + 1 insertion over 2 -> 3 / 5.
    assert error_rate([["AA", "B", "K"], ["D", "EH"]], [["AA", "F"], ["D", "EH", "EH"]]) == pytest.approx(3 / 5)
    ref = chars_to_words(words_to_chars("THE CAT SAT DOWN"))
    assert ref == ["THE", "CAT", "SAT", "DOWN"]
    assert error_rate([ref], [chars_to_words(list("THE|BAT||SAT"))]) == pytest.approx(2 / 4)
    assert words_to_chars("HI YO") == ["H", "I", "|", "Y", "O"]
    assert accuracy(["a", "b", "c", "d"], ["a", "b", "x", "d"]) == 0.75
    with pytest.raises(ValueError, match="no tokens"):
        error_rate([[]], [["a"]])


def test_ctc_greedy_decode_merges_repeats_drops_blanks_and_padding() -> None:
    path = torch.tensor([[0, 1, 1, 0, 1, 2, 2, 0, 3, 3], [2, 2, 0, 2, 0, 0, 0, 0, 1, 1]])
    logits = torch.nn.functional.one_hot(path, 4).float()
    assert ctc_greedy_decode(logits, torch.tensor([10, 5])) == [[1, 1, 2, 3], [2, 2]]


# -- heads learn planted signals, fail on noise --------------------------------------


def test_weighted_sum_weights_start_equal_and_sum_to_one() -> None:
    ws = WeightedSum(4)
    torch.testing.assert_close(ws.weights, torch.full((4,), 0.25))
    ws.logits.data = torch.randn(4)
    assert ws.weights.sum().item() == pytest.approx(1.0, abs=1e-6)
    x = torch.randn(4, 2, 5, 8)
    manual = sum(w * torch.nn.functional.layer_norm(x[i], (8,)) for i, w in enumerate(ws.weights))
    torch.testing.assert_close(ws(x), manual)


def _train_planted(task: str, signal: bool, epochs: int, **cfg) -> tuple[_Runner, dict, float]:
    feats, phones, labels = planted_split(96, 0, signal)
    test_feats, test_phones, test_labels = planted_split(32, 1, signal)
    refs = (phones, test_phones) if task in ("pr", "asr") else (labels, test_labels)
    train, test = Split(feats, refs[0]), Split(test_feats, refs[1])
    config = ProbeConfig(epochs=epochs, min_epochs=epochs, **cfg).resolved(task)
    torch.manual_seed(0)
    runner = _Runner(task, config, train)
    summary = runner.train(train, test, log=None)
    return runner, summary, runner.score(test)[runner.spec.metric]


def test_pr_probe_learns_planted_phones_and_puts_weight_on_that_layer() -> None:
    runner, summary, per = _train_planted("pr", signal=True, epochs=30, lr=3e-2)
    assert per < 0.1
    weights = runner.probe.weighted_sum.weights
    assert weights.argmax().item() == 1 and weights.sum().item() == pytest.approx(1.0, abs=1e-6)
    _, _, noise_per = _train_planted("pr", signal=False, epochs=30, lr=3e-2)
    assert noise_per > 0.6


def test_sid_probe_learns_planted_classes_and_fails_on_noise() -> None:
    _, _, acc = _train_planted("sid", signal=True, epochs=20)
    _, _, noise_acc = _train_planted("sid", signal=False, epochs=20)
    assert acc >= 0.9 and noise_acc <= 0.5  # 5 classes: chance 0.2


def test_asr_bilstm_probe_loss_decreases() -> None:
    _, summary, wer = _train_planted("asr", signal=True, epochs=12, lstm_hidden=32, lr=1e-2)
    losses = [h["train_loss"] for h in summary["history"]]
    assert losses[-1] < 0.5 * losses[0]
    assert 0.0 <= wer <= 1.0 + 1e-9


# -- end to end on audio: the feature cache ------------------------------------------


class CountingUpstream(BaselineUpstream):
    def __init__(self, name: str):
        super().__init__(name)
        self.calls = 0

    def extract(self, wav: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return super().extract(wav)


def test_mfcc_probe_on_tones_learns_and_fails_on_noise(tmp_path: Path) -> None:
    cfg = ProbeConfig(cache_dir=str(tmp_path / "cache"), epochs=30)
    result = run_probe("pr", "mfcc", *splits(tmp_path / "tones"), tmp_path / "out", cfg)
    noise = run_probe("pr", "mfcc", *splits(tmp_path / "noise", noise=True), None, cfg)
    assert result["test"] < 0.2 and noise["test"] > 0.7
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["metric"] == "per" and metrics["test"] == result["test"]
    assert metrics["layer_names"] == ["mfcc"] and metrics["layer_weights"] == [1.0]
    assert (tmp_path / "out" / "layer_weights.png").read_bytes()[:4] == b"\x89PNG"


def test_cache_hits_on_second_run_and_misses_when_audio_changes(tmp_path: Path) -> None:
    manifest = tone_corpus(tmp_path / "c", "train", 6, 0)
    up = CountingUpstream("mfcc")
    first, hit1 = load_or_extract(up, manifest, tmp_path / "cache")
    assert (hit1, up.calls) == (False, 6)
    second, hit2 = load_or_extract(up, manifest, tmp_path / "cache")
    assert (hit2, up.calls) == (True, 6)
    assert second.features.dtype == torch.float16
    torch.testing.assert_close(second.features, first.features)
    start, length = int(second.offsets[3]), int(second.lengths[3])
    wav3 = torch.from_numpy(sf.read(tmp_path / "c" / "wav" / "train-3.wav", dtype="float32")[0])
    torch.testing.assert_close(second.features[:, start : start + length].float(),
                               BaselineUpstream("mfcc").extract(wav3), atol=5e-3, rtol=2e-3)
    wav_path = tmp_path / "c" / "wav" / "train-0.wav"
    sf.write(wav_path, np.zeros(sf.info(wav_path).frames, dtype=np.float32) + 0.1, 16000)  # same length, new audio
    _, hit3 = load_or_extract(up, manifest, tmp_path / "cache")
    assert (hit3, up.calls) == (False, 12)
    _, hit4 = load_or_extract(BaselineUpstream("fbank"), manifest, tmp_path / "cache")
    assert hit4 is False


def test_probe_cache_hits_and_upstream_is_not_called_again(tmp_path: Path) -> None:
    train, valid, test = splits(tmp_path / "c")
    up = CountingUpstream("mfcc-context")
    cfg = ProbeConfig(cache_dir=str(tmp_path / "cache"), epochs=2, min_epochs=1)
    first = run_probe("pr", up, train, valid, test, None, cfg)
    calls = up.calls
    assert calls == 48 + 12 + 12 and not any(first["cache_hits"].values())
    second = run_probe("pr", up, train, valid, test, None, cfg)
    assert up.calls == calls and all(second["cache_hits"].values())
    assert second["test"] == first["test"]  # same seed, same cached features


# -- upstream adapters ---------------------------------------------------------------


def test_student_upstream_hidden_and_projections(tmp_path: Path) -> None:
    torch.manual_seed(0)
    Student.from_preset("tiny-arm").save_pretrained(tmp_path / "student")
    wav = torch.randn(8000)
    hidden = load_upstream(tmp_path / "student", "hidden")
    proj = load_upstream(tmp_path / "student", "projections")
    assert isinstance(hidden, StudentUpstream)
    assert tuple(hidden.extract(wav).shape) == (5, 24, 128) and len(hidden.layer_names) == 5
    assert tuple(proj.extract(wav).shape) == (4, 24, 256) and len(proj.layer_names) == 4
    assert hidden.fingerprint() != proj.fingerprint()
    assert load_upstream("tiny-arm", seed=3).fingerprint() == load_upstream("preset:tiny-arm", seed=3).fingerprint()
    assert load_upstream("tiny-arm", seed=3).fingerprint() != load_upstream("tiny-arm", seed=4).fingerprint()
    with pytest.raises(ValueError, match="no projection heads"):
        StudentUpstream(Student.from_preset("tiny-arm", proj_dim=None), "projections")


def test_teacher_upstream_gives_all_hidden_states(tmp_path: Path) -> None:
    path = make_random_teacher(tmp_path / "teacher")
    up = load_upstream(path)
    assert isinstance(up, TeacherUpstream)
    feats = up.extract(torch.randn(16000))
    assert feats.shape[0] == up.teacher.num_layers + 1 == len(up.layer_names)
    assert feats.shape[1:] == (49, up.teacher.dim)
    assert up.fingerprint().endswith(up.teacher.fingerprint())


# -- command line --------------------------------------------------------------------


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["probe", *argv])
    return args.func(args)


def test_probe_command_writes_metrics_and_rejects_bad_keys(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    train, valid, test = splits(tmp_path / "c")
    common = ["--task", "pr", "--upstream", "mfcc", "--train", str(train), "--valid", str(valid),
              "--test", str(test), "--cache-dir", str(tmp_path / "cache"), "--quiet"]
    assert _cli([*common, "--out", str(tmp_path / "out"), "--set", "epochs=3", "--set", "min_epochs=1"]) == 0
    printed = json.loads(capsys.readouterr().out)
    stored = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert printed["test"] == stored["test"] and stored["epochs_run"] == 3
    assert sum(stored["layer_weights"]) == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="lrate"):
        _cli([*common, "--set", "lrate=0.1"])
    (tmp_path / "c" / "test.phn").write_text("AA\n")
    with pytest.raises(ValueError, match="test.phn"):
        _cli(common)
