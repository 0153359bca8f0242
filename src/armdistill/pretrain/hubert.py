"""HuBERT-style masked prediction for a small transformers ``HubertModel``.

The model is a plain ``HubertModel``, saved with ``save_pretrained`` exactly like
``facebook/hubert-base-ls960``, so every loader of real teachers loads it too. Targets are one
unit per 20 ms frame: the synthesiser's phones (HuBERT's oracle-unit setting) or MFCC k-means
clusters (HuBERT's first iteration). The loss is HuBERT's: cosine similarity between projected
frames and unit embeddings over a temperature, cross-entropy on masked frames only.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm
from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

from armdistill.checks import check_choice, check_range
from armdistill.config import ConfigError
from armdistill.data.audio import load_audio
from armdistill.data.augment import AugmentConfig, Augmenter, change_speed, stretch_index
from armdistill.data.manifest import label_path, read_manifest
from armdistill.distill.masking import MaskConfig, compute_mask
from armdistill.errors import DataError, expected
from armdistill.frames import SAMPLE_RATE, WAV2VEC2_KERNELS_STRIDES, conv_output_lengths
from armdistill.pretrain.kmeans import kmeans
from armdistill.synth.alignments import frame_labels

CONV_KERNELS, CONV_STRIDES = zip(*WAV2VEC2_KERNELS_STRIDES)


@dataclass
class PretrainConfig:
    corpus: str = ""
    out_dir: str = "teacher"
    targets: Literal["phones", "kmeans"] = "phones"
    # pre-ln: the shipped teacher's stable layout; base: HuBERT Base's post-LN layers
    layout: Literal["pre-ln", "base"] = "pre-ln"
    num_clusters: int = 100
    conv_channels: int = 128
    dim: int = 256
    num_layers: int = 6
    num_heads: int = 4
    ffn_dim: int = 512
    pos_conv_kernel: int = 64
    steps: int = 2000
    batch_size: int = 16
    crop_seconds: float = 4.0
    lr: float = 5e-4
    warmup: float = 0.08
    clip: float = 1.0
    cnn_grad_scale: float = 0.1
    mask_prob: float = 0.8
    mask_length: int = 10
    seed: int = 0
    device: str = "auto"
    # waveform augmentation of the training crops (off unless augment.prob > 0); units stay the clean audio's
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        check_choice("targets", self.targets, ("phones", "kmeans"))
        for name in ("steps", "batch_size", "dim", "num_layers", "num_heads", "ffn_dim", "num_clusters"):
            check_range(name, getattr(self, name), ge=1)
        if self.dim % self.num_heads or self.dim % 16:
            raise ConfigError(expected("dim", f"a multiple of num_heads={self.num_heads} and of 16", self.dim))


def hubert_config(cfg: PretrainConfig) -> HubertConfig:
    """GroupNorm front end as Base; pre-LN layers (``layout="pre-ln"``: stable at this scale, where
    post-LN once diverged) or HuBERT Base's post-LN layers (``layout="base"``)."""
    return HubertConfig(
        conv_dim=(cfg.conv_channels,) * 7, conv_kernel=CONV_KERNELS, conv_stride=CONV_STRIDES, conv_bias=False,
        feat_extract_norm="group", hidden_size=cfg.dim, num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads, intermediate_size=cfg.ffn_dim, do_stable_layer_norm=cfg.layout == "pre-ln",
        num_conv_pos_embeddings=cfg.pos_conv_kernel, num_conv_pos_embedding_groups=16, layerdrop=0.0,
        mask_time_prob=0.05, apply_spec_augment=True, hidden_dropout=0.1, attention_dropout=0.1,
        activation_dropout=0.0, feat_proj_dropout=0.0,
    )


class UnitHead(nn.Module):
    """HuBERT's prediction head: ``cos(W x, e_c) / 0.1`` for every unit ``c``."""

    def __init__(self, dim: int, num_units: int, emb_dim: int = 128, temperature: float = 0.1):
        super().__init__()
        self.final_proj = nn.Linear(dim, emb_dim)
        self.label_embs = nn.Parameter(torch.randn(num_units, emb_dim) * 0.02)
        self.temperature = temperature

    def forward(self, x: Tensor) -> Tensor:
        """x ``[frames, dim]`` -> logits ``[frames, num_units]``."""
        return F.cosine_similarity(self.final_proj(x)[:, None, :], self.label_embs[None], dim=-1) / self.temperature


@dataclass
class UnitCorpus:
    wavs: list[Tensor]  # [samples] each
    units: list[Tensor]  # [frames] int64 each
    inventory: list[str]


def _frames(num_samples: int) -> int:
    return int(conv_output_lengths(torch.tensor([num_samples]), list(WAV2VEC2_KERNELS_STRIDES))[0])


def load_unit_corpus(corpus: str | Path, targets: str, num_clusters: int, seed: int) -> UnitCorpus:
    """Audio of ``corpus/train.tsv`` with one unit per frame (phones or MFCC k-means)."""
    manifest_path = Path(corpus) / "train.tsv"
    manifest = read_manifest(manifest_path)
    wavs = [torch.from_numpy(load_audio(manifest.audio_path(i))) for i in tqdm(range(len(manifest)), desc="audio")]
    if targets == "phones":
        alignments = [json.loads(line) for line in label_path(manifest_path, "ali.jsonl").read_text().splitlines()]
        if len(alignments) != len(wavs):
            raise DataError(f"{manifest_path}: {len(wavs)} utterances but {len(alignments)} alignments")
        labels = [frame_labels(ali, _frames(len(w))) for ali, w in zip(alignments, wavs)]
        inventory = sorted({p for seq in labels for p in seq})
        index = {p: i for i, p in enumerate(inventory)}
        units = [torch.tensor([index[p] for p in seq]) for seq in labels]
        return UnitCorpus(wavs, units, inventory)
    from armdistill.eval.features import baseline_features

    feats = [baseline_features("mfcc", w) for w in tqdm(wavs, desc="mfcc")]
    assignments = kmeans(torch.cat(feats), num_clusters, seed=seed)
    units, start = [], 0
    for f in feats:
        units.append(assignments[start : start + len(f)])
        start += len(f)
    return UnitCorpus(wavs, units, [str(i) for i in range(num_clusters)])


def _batch(
    corpus: UnitCorpus, cfg: PretrainConfig, rng: np.random.Generator, augmenter: Augmenter
) -> tuple[Tensor, Tensor]:
    """Equal-length random crops (no padding): ``[B, samples]`` and their units ``[B, frames]``.

    An augmented crop at speed ``s`` is cut ``s`` times as long from the source (at most the
    whole utterance) and resampled to the crop length; its units are the source frames under
    each output frame.
    """
    idx = rng.choice(len(corpus.wavs), size=cfg.batch_size, replace=len(corpus.wavs) < cfg.batch_size)
    hop = 320
    crop = min(int(cfg.crop_seconds * SAMPLE_RATE), *(len(corpus.wavs[i]) for i in idx))
    frames = _frames(crop)
    wavs, units = [], []
    for i in idx:
        wav, unit = corpus.wavs[i], corpus.units[i]
        speed = augmenter.draw(rng)
        source = crop if speed is None else min(len(wav), int(round(crop * speed)))
        # Crops start on a frame boundary so the units of frame t stay those of the full utterance.
        start_frame = int(rng.integers(0, (len(wav) - source) // hop + 1))
        segment = wav[start_frame * hop : start_frame * hop + source]
        if speed is None:
            wavs.append(segment)
            units.append(unit[start_frame : start_frame + frames])
            continue
        factor = source / crop
        seg = change_speed(segment.numpy(), factor) if source != crop else segment.numpy()
        wavs.append(torch.from_numpy(augmenter(seg, rng)))
        src = start_frame + stretch_index(frames, factor, len(unit) - start_frame)
        units.append(unit[torch.from_numpy(src)])
    return torch.stack(wavs), torch.stack(units)


def _lr_lambda(cfg: PretrainConfig):
    warm = max(1, int(cfg.warmup * cfg.steps))
    return lambda step: min((step + 1) / warm, max(0.0, (cfg.steps - step) / max(1, cfg.steps - warm)))


def pretrain(cfg: PretrainConfig) -> dict:
    """Train, save the ``HubertModel`` (and its head for reference) to ``cfg.out_dir``; return stats."""
    started = time.time()
    device = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if cfg.device == "auto" else cfg.device))
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    corpus = load_unit_corpus(cfg.corpus, cfg.targets, cfg.num_clusters, cfg.seed)
    model = HubertModel(hubert_config(cfg)).to(device).train()
    head = UnitHead(cfg.dim, len(corpus.inventory)).to(device)
    params = list(model.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg))
    mask_cfg = MaskConfig(mask_prob=cfg.mask_prob, mask_length=cfg.mask_length)
    augmenter = Augmenter(cfg.augment)
    cnn_params = list(model.feature_extractor.parameters())
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    history = []
    bar = tqdm(range(cfg.steps), desc="pretrain")
    for step in bar:
        wav, units = _batch(corpus, cfg, rng, augmenter)
        mask = compute_mask(units.shape[0], units.shape[1], None, mask_cfg, rng)
        wav, units, mask = wav.to(device), units.to(device), mask.to(device)
        with autocast:
            hidden = model(wav, mask_time_indices=mask).last_hidden_state
            logits = head(hidden[mask].float())
        loss = F.cross_entropy(logits, units[mask])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for p in cnn_params:  # fairseq's feature_grad_mult: the CNN learns more slowly
            if p.grad is not None:
                p.grad.mul_(cfg.cnn_grad_scale)
        torch.nn.utils.clip_grad_norm_(params, cfg.clip)
        opt.step()
        sched.step()
        acc = (logits.argmax(-1) == units[mask]).float().mean().item()
        history.append({"step": step, "loss": loss.item(), "masked_accuracy": acc})
        bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{acc:.2f}")
    out = Path(cfg.out_dir)
    model.eval().cpu().save_pretrained(out, safe_serialization=True)
    Wav2Vec2FeatureExtractor(do_normalize=False, return_attention_mask=True).save_pretrained(out)
    tail = history[-max(1, cfg.steps // 20):]
    stats = {
        "params": sum(p.numel() for p in model.parameters()),
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "wall_seconds": round(time.time() - started, 1),
        "final_loss": float(np.mean([h["loss"] for h in tail])),
        "final_masked_accuracy": float(np.mean([h["masked_accuracy"] for h in tail])),
        "num_units": len(corpus.inventory),
        "train_utterances": len(corpus.wavs),
        "train_hours": sum(len(w) for w in corpus.wavs) / SAMPLE_RATE / 3600,
    }
    (out / "pretrain_history.json").write_text(json.dumps({"stats": stats, "history": history[:: max(1, cfg.steps // 200)]}))
    return stats
