"""Teacher pretraining: HuBERT masked prediction on synthetic phones, and k-means units."""

import json

import numpy as np
import torch

from armdistill.config import from_dict
from armdistill.pretrain.hubert import PretrainConfig, pretrain
from armdistill.pretrain.kmeans import kmeans
from armdistill.synth.corpus import generate
from armdistill.teachers import Teacher


def test_kmeans_recovers_planted_clusters():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(5, 8, generator=g) * 10
    truth = torch.randint(0, 5, (2000,), generator=g)
    x = centres[truth] + torch.randn(2000, 8, generator=g) * 0.1
    found = kmeans(x, 5, seed=1)
    # Same partition up to relabelling: every true cluster maps to exactly one found cluster.
    pairs = {(int(t), int(f)) for t, f in zip(truth, found)}
    assert len(pairs) == 5 and len({f for _, f in pairs}) == 5


def test_phone_target_pretraining_learns_and_saves_a_loadable_teacher(tmp_path):
    corpus = tmp_path / "corpus"
    generate(corpus, minutes=1.0, seed=3, workers=1)
    cfg = PretrainConfig(
        corpus=str(corpus), out_dir=str(tmp_path / "teacher"), conv_channels=32, dim=32, num_layers=2,
        num_heads=4, ffn_dim=64, pos_conv_kernel=16, steps=60, batch_size=4, crop_seconds=1.5, lr=3e-3,
        mask_prob=0.5, device="cpu",
    )
    stats = pretrain(cfg)
    history = json.loads((tmp_path / "teacher" / "pretrain_history.json").read_text())["history"]
    first = sum(h["loss"] for h in history[:5]) / 5
    last = sum(h["loss"] for h in history[-5:]) / 5
    assert last < 0.9 * first, (first, last)
    assert stats["num_units"] <= 40 and stats["params"] > 0

    teacher = Teacher.from_pretrained(tmp_path / "teacher")
    assert teacher.num_layers == 2 and teacher.dim == 32 and not teacher.normalize
    assert teacher.downsample == 320


def test_augmented_crops_keep_units_under_their_frames():
    from armdistill.data.augment import AugmentConfig, Augmenter
    from armdistill.pretrain.hubert import UnitCorpus, _batch

    # units = frame index, so each crop's units show which source frames it covers
    wavs = [torch.randn(16000 * 3) for _ in range(4)]
    corpus = UnitCorpus(wavs, [torch.arange(149) for _ in wavs], [str(i) for i in range(149)])
    cfg = PretrainConfig(batch_size=8, crop_seconds=1.0, augment=AugmentConfig(prob=1.0, speed_prob=1.0))
    wav, units = _batch(corpus, cfg, np.random.default_rng(0), Augmenter(cfg.augment))
    assert wav.shape == (8, 16000) and units.shape == (8, 49)
    spans = (units[:, -1] - units[:, 0]).float() / 48
    assert (units.diff(dim=1) >= 0).all()
    assert spans.min() > 0.8 and spans.max() < 1.2 and spans.std() > 0.02  # speeds drawn from 0.85-1.15
    plain = PretrainConfig(batch_size=8, crop_seconds=1.0)
    _, units = _batch(corpus, plain, np.random.default_rng(0), Augmenter(plain.augment))
    assert (units.diff(dim=1) == 1).all()


def test_base_layout_kmeans_teacher_with_augmentation_is_post_ln_and_learns(tmp_path):
    corpus = tmp_path / "corpus"
    generate(corpus, minutes=0.5, seed=4, workers=1)
    cfg = from_dict(PretrainConfig, {
        "corpus": str(corpus), "out_dir": str(tmp_path / "teacher"), "targets": "kmeans", "num_clusters": 20,
        "layout": "base", "conv_channels": 32, "dim": 32, "num_layers": 2, "num_heads": 4, "ffn_dim": 64,
        "pos_conv_kernel": 16, "steps": 60, "batch_size": 4, "crop_seconds": 1.5, "lr": 3e-3, "mask_prob": 0.5,
        "device": "cpu", "augment": {"prob": 0.5},
    })
    stats = pretrain(cfg)
    history = json.loads((tmp_path / "teacher" / "pretrain_history.json").read_text())["history"]
    first = sum(h["loss"] for h in history[:5]) / 5
    last = sum(h["loss"] for h in history[-5:]) / 5
    assert last < 0.95 * first, (first, last)
    assert stats["num_units"] == 20
    config = json.loads((tmp_path / "teacher" / "config.json").read_text())
    assert config["do_stable_layer_norm"] is False and config["feat_extract_norm"] == "group"
    teacher = Teacher.from_pretrained(tmp_path / "teacher")
    assert teacher.num_layers == 2 and teacher.dim == 32
