"""SUPERB-protocol probes on frozen, cached upstream features.

``run_probe`` extracts (or loads cached) features for the train / valid / test manifests,
trains a learned weighted sum of the upstream's layers plus a task head, keeps the epoch with
the best validation metric, and reports the test metric and the learned layer weights.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from armdistill.checks import check_choice, check_range
from armdistill.config import ConfigError, from_dict, to_dict
from armdistill.data.bad_audio import BadAudioPolicy
from armdistill.data.manifest import read_labels, read_manifest
from armdistill.errors import DataError
from armdistill.eval.cache import FeatureDtype, FeatureSet, default_batch_seconds, load_or_extract
from armdistill.eval.heads import BiLSTMHead, LinearHead, MeanPoolHead, Probe
from armdistill.eval.metrics import accuracy, chars_to_words, ctc_greedy_decode, error_rate, words_to_chars
from armdistill.eval.plots import plot_layer_weights
from armdistill.eval.upstream import StudentFeatures, Upstream, as_upstream
from armdistill.frames import valid_mask
from armdistill.threads import torch_threads

Task = Literal["pr", "asr", "ks", "sid"]
BLANK = "<blank>"


@dataclass(frozen=True)
class TaskSpec:
    label_ext: str
    kind: Literal["ctc", "cls"]
    metric: str
    lr: float
    epochs: int
    min_epochs: int


# CTC probes on weak features sit on an all-blank plateau for many epochs, so they are never
# stopped before 40 epochs. Linear PR probe: lr 1e-2, batch 8, up to 120 epochs (on 26 min of
# synthetic speech, MFCC +-2 context reached PER 0.33 only after ~65 epochs; lr 3e-3 was worse).
# The BiLSTM ASR probe leaves the blank plateau within a few epochs but costs ~30 s an epoch
# on that corpus with one CPU thread, so it gets fewer epochs.
TASKS: dict[str, TaskSpec] = {
    "pr": TaskSpec("phn", "ctc", "per", lr=1e-2, epochs=120, min_epochs=40),
    "asr": TaskSpec("wrd", "ctc", "wer", lr=2e-3, epochs=30, min_epochs=10),
    "ks": TaskSpec("lbl", "cls", "accuracy", lr=5e-3, epochs=60, min_epochs=15),
    "sid": TaskSpec("spk", "cls", "accuracy", lr=5e-3, epochs=60, min_epochs=15),
}


@dataclass
class ProbeConfig:
    """Probe training settings; ``None`` means the task's default (see ``TASKS``)."""

    lr: float | None = None
    epochs: int | None = None
    min_epochs: int | None = None
    patience: int = 20
    batch_size: int = 8
    layer_norm: bool = True
    weight_decay: float = 0.0
    grad_clip: float = 5.0
    lstm_hidden: int = 256
    lstm_dropout: float = 0.2
    student_features: StudentFeatures = "hidden"
    feature_dtype: FeatureDtype = "float16"
    cache_dir: str | None = None
    seed: int = 0
    # an unusable audio file stops the probe (error) or is left out with its label (skip)
    on_bad_audio: BadAudioPolicy = "error"
    # Torch threads while the probe trains (None: leave as is). Probe steps are small: on a
    # shared 2-core CPU one thread measured ~50x faster than two (0.17 s vs ~9 s for 180 steps).
    num_threads: int | None = 1
    # Feature extraction: torch threads (None: the cores the load average leaves free), the
    # device the upstream runs on, and the padded seconds per length-sorted batch (None: the
    # device's default, eval/cache.py).
    feature_threads: int | None = None
    feature_device: str = "cpu"
    feature_batch_seconds: float | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "min_epochs", "num_threads", "feature_threads"):
            check_range(name, getattr(self, name), ge=1, null=True)
        check_range("lr", self.lr, gt=0, null=True)
        for name in ("batch_size", "patience", "lstm_hidden"):
            check_range(name, getattr(self, name), ge=1)
        check_range("feature_batch_seconds", self.feature_batch_seconds, gt=0, null=True)
        try:
            torch.device(self.feature_device)
        except RuntimeError:
            raise ConfigError(f"feature_device: expected a torch device such as 'cpu' or 'cuda', got {self.feature_device!r}") from None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ProbeConfig":
        return from_dict(cls, data)

    def resolved(self, task: str) -> "ProbeConfig":
        """This config with the task's defaults filled in."""
        spec = TASKS[task]
        return replace(
            self,
            lr=self.lr if self.lr is not None else spec.lr,
            epochs=self.epochs if self.epochs is not None else spec.epochs,
            min_epochs=self.min_epochs if self.min_epochs is not None else spec.min_epochs,
        )


def default_cache_dir() -> Path:
    root = os.environ.get("ARMDISTILL_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "armdistill"


@dataclass
class Split:
    """Cached features with their references: token lists (CTC) or class names."""

    feats: FeatureSet
    refs: list[Any]


def read_references(task: str, manifest_path: str | Path) -> list[Any]:
    """Per-utterance references: phones (pr), characters with ``|`` (asr), a label (ks, sid)."""
    spec = TASKS[task]
    lines = read_labels(manifest_path, spec.label_ext, expected=len(read_manifest(manifest_path)))
    if task == "pr":
        return [line.split() for line in lines]
    if task == "asr":
        return [words_to_chars(line) for line in lines]
    return [line.strip() for line in lines]


def _batches(lengths: Tensor, batch_size: int) -> list[Tensor]:
    """Utterance indices grouped by similar length, to keep padding low."""
    order = torch.argsort(lengths, descending=True, stable=True)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _gather(feats: FeatureSet, idx: Tensor) -> tuple[Tensor, Tensor]:
    """Utterances ``idx`` as a zero-padded ``[layers, batch, frames, dim]`` batch and their lengths."""
    lengths = feats.lengths[idx]
    frames = int(lengths.max().clamp(min=1))
    valid = valid_mask(lengths, frames)
    frame_idx = torch.where(valid, feats.offsets[idx][:, None] + torch.arange(frames)[None, :], 0)
    x = feats.features[:, frame_idx].masked_fill(~valid[None, :, :, None], 0)
    return x, lengths


class _Runner:
    """Training and evaluation of one probe on prepared splits."""

    def __init__(self, task: str, cfg: ProbeConfig, train: Split):
        self.task, self.cfg, self.spec = task, cfg, TASKS[task]
        if self.spec.kind == "ctc":
            self.vocab = [BLANK] + sorted({t for ref in train.refs for t in ref})
        else:
            self.vocab = sorted(set(train.refs))
        self.index = {t: i for i, t in enumerate(self.vocab)}
        dim, n = train.feats.dim, len(self.vocab)
        if task == "pr":
            head: nn.Module = LinearHead(dim, n)
        elif task == "asr":
            head = BiLSTMHead(dim, n, hidden=cfg.lstm_hidden, dropout=cfg.lstm_dropout)
        else:
            head = MeanPoolHead(dim, n)
        self.probe = Probe(train.feats.num_layers, head, cfg.layer_norm)

    def loss(self, split: Split, idx: Tensor) -> Tensor:
        x, lengths = _gather(split.feats, idx)
        out = self.probe(x, lengths)
        if self.spec.kind == "cls":
            return F.cross_entropy(out, torch.tensor([self.index[split.refs[i]] for i in idx.tolist()]))
        targets = [[self.index[t] for t in split.refs[i]] for i in idx.tolist()]
        log_probs = out.log_softmax(dim=-1).transpose(0, 1)  # [frames, batch, classes]
        return F.ctc_loss(
            log_probs, torch.tensor([t for seq in targets for t in seq], dtype=torch.long), lengths,
            torch.tensor([len(seq) for seq in targets]), blank=0, zero_infinity=True,
        )

    @torch.no_grad()
    def predict(self, split: Split) -> list[Any]:
        self.probe.eval()
        hyps: list[Any] = [None] * len(split.feats)
        for idx in _batches(split.feats.lengths, max(self.cfg.batch_size, 32)):
            x, lengths = _gather(split.feats, idx)
            out = self.probe(x, lengths)
            if self.spec.kind == "cls":
                decoded = [self.vocab[c] for c in out.argmax(dim=-1).tolist()]
            else:
                decoded = [[self.vocab[c] for c in seq] for seq in ctc_greedy_decode(out, lengths)]
            for i, hyp in zip(idx.tolist(), decoded):
                hyps[i] = hyp
        return hyps

    def score(self, split: Split) -> dict[str, float]:
        hyps = self.predict(split)
        if self.task == "pr":
            return {"per": error_rate(split.refs, hyps)}
        if self.task == "asr":
            return {
                "wer": error_rate([chars_to_words(r) for r in split.refs], [chars_to_words(h) for h in hyps]),
                "cer": error_rate(split.refs, hyps),
            }
        return {"accuracy": accuracy(split.refs, hyps)}

    def better(self, new: float, best: float | None) -> bool:
        if best is None:
            return True
        return new > best if self.spec.metric == "accuracy" else new < best

    def train(self, train: Split, valid: Split, log: Callable[[str], None] | None) -> dict[str, Any]:
        cfg = self.cfg
        optimizer = torch.optim.Adam(self.probe.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        generator = torch.Generator().manual_seed(cfg.seed)
        usable = torch.nonzero(train.feats.lengths > 0).flatten()
        batches = [usable[b] for b in _batches(train.feats.lengths[usable], cfg.batch_size)]
        best, best_epoch, best_state, history = None, 0, None, []
        for epoch in range(1, cfg.epochs + 1):
            self.probe.train()
            total = 0.0
            for b in torch.randperm(len(batches), generator=generator).tolist():
                loss = self.loss(train, batches[b])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(self.probe.parameters(), cfg.grad_clip)
                optimizer.step()
                total += loss.item()
            scores = self.score(valid)
            value = scores[self.spec.metric]
            history.append({"epoch": epoch, "train_loss": total / len(batches), **{f"valid_{k}": v for k, v in scores.items()}})
            if self.better(value, best):
                best, best_epoch = value, epoch
                best_state = {k: v.detach().clone() for k, v in self.probe.state_dict().items()}
            if log is not None:
                log(f"epoch {epoch}: train loss {total / len(batches):.4f}, valid {self.spec.metric} {value:.4f}")
            if epoch >= cfg.min_epochs and epoch - best_epoch >= cfg.patience:
                break
        self.probe.load_state_dict(best_state)
        return {"best_epoch": best_epoch, "epochs_run": len(history), "history": history}


def _prepare(task: str, upstream: Upstream, manifest: str | Path, cfg: ProbeConfig, cache_dir: Path,
             progress: bool) -> tuple[Split, bool]:
    refs = read_references(task, manifest)
    batch_seconds = cfg.feature_batch_seconds or default_batch_seconds(cfg.feature_device)
    feats, hit = load_or_extract(upstream, manifest, cache_dir, cfg.feature_dtype, progress, cfg.on_bad_audio,
                                 batch_seconds, cfg.feature_threads)
    refs = [ref for i, ref in enumerate(refs) if i not in feats.skipped]
    if len(feats) != len(refs):
        raise DataError(f"{manifest}: {len(refs)} labels but {len(feats)} feature sequences")
    return Split(feats, refs), hit


def run_probe(
    task: Task,
    upstream: Upstream | nn.Module | str | Path,
    train: str | Path,
    valid: str | Path,
    test: str | Path,
    out_dir: str | Path | None = None,
    cfg: ProbeConfig | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train and score one probe; writes ``metrics.json`` and ``layer_weights.png`` to ``out_dir``.

    Returns the metrics dict: ``metric`` (per / wer / accuracy), ``test`` and ``valid`` values,
    ``test_scores`` (all test metrics), ``layer_weights`` with ``layer_names``, ``cache_hits``.
    """
    check_choice("task", task, TASKS)
    cfg = (cfg or ProbeConfig()).resolved(task)
    up = as_upstream(upstream, cfg.student_features, cfg.seed).to(cfg.feature_device)
    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir() / "features"
    splits, hits = {}, {}
    for name, manifest in (("train", train), ("valid", valid), ("test", test)):
        splits[name], hits[name] = _prepare(task, up, manifest, cfg, cache_dir, progress=log is not None)
        if log is not None and splits[name].feats.skipped:
            log(f"{name}: left out {len(splits[name].feats.skipped)} unusable audio files of {manifest}")
    with torch_threads(cfg.num_threads):
        with torch.random.fork_rng():
            torch.manual_seed(cfg.seed)
            runner = _Runner(task, cfg, splits["train"])
            summary = runner.train(splits["train"], splits["valid"], log)
        test_scores = runner.score(splits["test"])
    metric = TASKS[task].metric
    weights = runner.probe.weighted_sum.weights.detach().tolist()
    result = {
        "task": task,
        "upstream": up.name,
        "fingerprint": up.fingerprint(),
        "student_features": up.features,
        "metric": metric,
        "test": test_scores[metric],
        "valid": summary["history"][summary["best_epoch"] - 1][f"valid_{metric}"],
        "test_scores": test_scores,
        "layer_names": splits["train"].feats.layer_names,
        "layer_weights": weights,
        "vocab_size": len(runner.vocab),
        "num_utterances": {k: len(s.feats) for k, s in splits.items()},
        "skipped_files": {k: len(s.feats.skipped) for k, s in splits.items()},
        "cache_hits": hits,
        "config": to_dict(cfg),
        **summary,
    }
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
        title = f"{task.upper()} probe, {up.name}: test {metric} {result['test']:.4f}"
        plot_layer_weights(weights, result["layer_names"], out / "layer_weights.png", title)
    return result
