"""Teacher pretraining: HuBERT masked prediction on synthetic phones, and k-means units."""

import json

import torch

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
