"""The ARM student: exact sizes, reuse routes, padding exactness, persistence, config validation."""

import math

import pytest
import torch

from armdistill.config import ConfigError
from armdistill.frames import conv_output_lengths
from armdistill.models.config import StudentConfig, preset_config
from armdistill.models.layers import scale_grad
from armdistill.models.student import Student

torch.manual_seed(0)


@pytest.mark.parametrize(
    "preset,total,backbone,heads",
    [
        ("armhubert", 26_448_448, 22_015_552, 4_432_896),
        ("armhubert-s", 22_394_080, 18_403_552, 3_990_528),
        ("armwavlm-s", 22_394_080, 18_403_552, 3_990_528),
        ("maskhubert", 26_635_840, 22_202_944, 4_432_896),
    ],
)
def test_release_preset_parameter_counts_are_exact(preset, total, backbone, heads):
    counts = Student.from_preset(preset).num_parameters()
    assert counts == {"params_total": total, "params_backbone": backbone, "params_heads": heads}


def test_reusing_layers_have_no_query_key_projections():
    student = Student.from_preset("armhubert")
    for computes, layer in zip(student.config.reuse_pattern, student.encoder.layers):
        names = {n for n, _ in layer.attention.named_parameters()}
        has_qk = {"q_proj.weight", "k_proj.weight", "q_proj.bias", "k_proj.bias"} <= names
        assert has_qk == computes
        assert {"v_proj.weight", "out_proj.weight"} <= names


def _tiny(**overrides) -> Student:
    return Student.from_preset("tiny-arm", **overrides).eval()


def _batch(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    wav = torch.zeros(len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        wav[i, :n] = torch.randn(n, generator=g)
    return wav, torch.tensor(lengths)


def _valid(out, b):
    n = int(out.lengths[b])
    return [h[b, :n] for h in out.hidden_states] + [p[b, :n] for p in out.projections]


def _assert_close_valid(a, b, ia, ib, atol):
    for x, y in zip(_valid(a, ia), _valid(b, ib)):
        torch.testing.assert_close(x, y, atol=atol, rtol=0)


@pytest.mark.parametrize("pattern", [[True, False, True, False], [True, False, False, True]])
def test_paper_equals_explicit(pattern):
    student = _tiny(reuse_pattern=pattern)
    wav, lengths = _batch([16000, 11000, 7000])
    with torch.no_grad():
        paper = student(wav, lengths)
        student.reuse_mode = "explicit"
        explicit = student(wav, lengths)
    for b in range(3):
        _assert_close_valid(paper, explicit, b, b, atol=1e-5)


def test_paper_mode_is_batch_invariant_and_release_mode_is_not():
    student = _tiny()
    wav, lengths = _batch([16000, 9000, 12000])
    with torch.no_grad():
        alone = student(wav[1:2, :9000], lengths[1:2])
        batched = student(wav, lengths)
        _assert_close_valid(alone, batched, 0, 1, atol=1e-5)

        student.reuse_mode = "release"
        alone_r = student(wav[1:2, :9000], lengths[1:2])
        batched_r = student(wav, lengths)
    gap = (alone_r.hidden_states[-1][0] - batched_r.hidden_states[-1][1, : alone_r.hidden_states[-1].shape[1]]).abs().max()
    assert gap > 1e-2, "release maths mixes utterances of a batch; outputs must depend on the batch"


def test_extra_padding_does_not_change_valid_frames():
    student = _tiny()
    wav, lengths = _batch([12000, 8000])
    padded = torch.cat([wav, torch.randn(2, 5000)], dim=1)  # garbage beyond each length
    with torch.no_grad():
        a = student(wav, lengths)
        b = student(padded, lengths)
    assert torch.equal(a.lengths, b.lengths)
    for i in range(2):
        _assert_close_valid(a, b, i, i, atol=1e-5)


def test_frame_lengths_follow_the_conv_formula():
    student = _tiny()
    lengths = torch.tensor([400, 16000, 16319, 16320, 33333])
    expected = [math.floor((n - 400) / 320) + 1 for n in lengths.tolist()]  # receptive field 400, stride 320
    assert student.frame_lengths(lengths).tolist() == expected
    with torch.no_grad():
        out = student(torch.randn(1, 33333))
    assert out.hidden_states[0].shape[1] == expected[-1]


def test_attention_maps_are_distributions_over_valid_keys():
    student = _tiny()
    wav, lengths = _batch([16000, 8000])
    for mode in ("paper", "explicit", "release"):
        student.reuse_mode = mode
        with torch.no_grad():
            out = student(wav, lengths, output_attentions=True)
        assert len(out.attentions) == student.config.num_layers
        for maps in out.attentions:
            torch.testing.assert_close(maps.sum(-1), torch.ones(maps.shape[:-1]), atol=1e-5, rtol=0)
            assert maps[1, :, :, int(out.lengths[1]):].abs().max() == 0  # padded keys get no weight
    # The release's second softmax over probabilities flattens the reused map: max/min <= e.
    reused = out.attentions[1][0, :, : int(out.lengths[0]), : int(out.lengths[0])]
    assert (reused.amax(-1) / reused.amin(-1)).max() <= math.e + 1e-4


def test_output_attentions_does_not_change_outputs():
    student = _tiny()
    wav, lengths = _batch([16000, 8000])
    with torch.no_grad():
        plain = student(wav, lengths)
        with_maps = student(wav, lengths, output_attentions=True)
    for b in range(2):
        _assert_close_valid(plain, with_maps, b, b, atol=1e-5)


def test_fully_masked_input_ignores_the_waveform():
    student = _tiny(feature_dropout=0.0)
    wav, lengths = _batch([8000, 8000])
    frames = int(student.frame_lengths(torch.tensor([8000]))[0])
    mask = torch.ones(2, frames, dtype=torch.bool)
    with torch.no_grad():
        out = student(wav, lengths, mask=mask)
    torch.testing.assert_close(out.hidden_states[-1][0], out.hidden_states[-1][1], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="mask"):
        student(wav, lengths, mask=mask[:, :-1])


def test_save_load_round_trip_and_mode_switch(tmp_path):
    student = _tiny()
    wav, lengths = _batch([16000, 10000])
    student.save_pretrained(tmp_path / "s")
    loaded = Student.from_pretrained(tmp_path / "s").eval()
    assert loaded.config == student.config
    with torch.no_grad():
        a, b = student(wav, lengths), loaded(wav, lengths)
        for x, y in zip(a.hidden_states + a.projections, b.hidden_states + b.projections):
            assert torch.equal(x, y)
        loaded.reuse_mode = "release"
        assert not torch.allclose(loaded(wav, lengths).hidden_states[-1], b.hidden_states[-1])
    with pytest.raises(ConfigError, match="reuse_mode"):
        loaded.reuse_mode = "fast"


def test_gradient_scaling_splits_gradients_as_the_release():
    x = torch.ones(3, requires_grad=True)
    scale_grad(x, 0.25).sum().backward()
    assert torch.equal(x.grad, torch.full((3,), 0.25))

    wav, lengths = _batch([8000])
    plain = _tiny(grad_scale=False, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, feature_dropout=0.0)
    scaled = _tiny(grad_scale=True, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, feature_dropout=0.0)
    scaled.load_state_dict(plain.state_dict())
    grads = []
    for model in (plain, scaled):
        out = model(wav, lengths)
        out.projections[-1].sum().backward()
        grads.append(model.encoder.layers[-1].final_layer_norm.weight.grad.clone())
        torch.testing.assert_close(out.hidden_states[-1], plain(wav, lengths).hidden_states[-1])
    n = scaled.config.num_layers
    m = 1 / 2  # m_i = (n - i) / (n + 1 - i) at the last layer i = n - 1
    assert scaled.encoder.grad_scales[-1] == m and scaled.encoder.grad_scales[0] == n / (n + 1)
    # The loss branch is split off the already-scaled running state: m * (1 - m) in all.
    torch.testing.assert_close(grads[1], grads[0] * m * (1 - m), rtol=1e-5, atol=1e-7)


def test_projection_heads_optional_and_pre_ln_supported():
    student = _tiny(proj_dim=None, layer_norm_first=True)
    with torch.no_grad():
        out = student(torch.randn(1, 8000))
    assert out.projections is None and student.num_parameters()["params_heads"] == 0
    last = out.hidden_states[-1]
    torch.testing.assert_close(last.mean(-1), torch.zeros(last.shape[:-1]), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "overrides,key",
    [
        ({"reuse_pattern": [False, True, True, True]}, "reuse_pattern[0]"),
        ({"reuse_pattern": [True, False, True]}, "reuse_pattern"),
        ({"dim": 130}, "dim"),
        ({"dropout": 1.5}, "dropout"),
        ({"reuse_mode": "fast"}, "reuse_mode"),
        ({"conv_layers": []}, "conv_layers"),
        ({"widht": 3}, "widht"),
    ],
)
def test_invalid_configs_name_the_key(overrides, key):
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        preset_config("tiny-arm", **overrides)


def test_config_from_dict_rejects_unknown_and_mistyped_keys():
    with pytest.raises(ConfigError, match="num_heads"):
        StudentConfig.from_dict({"conv_layers": [[8, 10, 5]], "dim": 16, "num_heads": "4", "num_layers": 1})
    with pytest.raises(ConfigError, match="'colour'"):
        StudentConfig.from_dict({"colour": 1})
    cfg = StudentConfig.from_dict({"conv_layers": [[8, 10, 5]], "dim": 16, "num_heads": 4, "num_layers": 2,
                                   "pos_conv_groups": 4})
    assert cfg.reuse_pattern == [True, True] and cfg.conv_layers == [(8, 10, 5)]
    assert conv_output_lengths(torch.tensor([20]), [(10, 5)]).item() == 3


def test_distilhubert_preset_and_teacher_initialisation():
    from armdistill.teachers import make_random_model

    student = Student.from_preset("distilhubert")
    counts = student.num_parameters()
    # Published 23.49M counts the backbone without heads and without a mask embedding.
    assert counts["params_backbone"] - 768 == 23_492_224
    assert counts["params_heads"] == 3 * (768 * 768 + 768)
    assert student.config.head_layers == [1, 1, 1]

    teacher = make_random_model(
        "hubert", conv_dim=(512,) * 7, hidden_size=768, num_hidden_layers=3, num_attention_heads=12,
        intermediate_size=3072, num_conv_pos_embeddings=128, num_conv_pos_embedding_groups=16,
    )
    copied = student.init_from_teacher(teacher.state_dict())
    assert "mask_embedding" in copied and "encoder.layers.1.feed_forward.output_dense.weight" in copied
    assert not any(k.startswith("encoder.layers.2") or k.startswith("heads") for k in copied)
    torch.testing.assert_close(
        student.encoder.layers[0].attention.q_proj.weight, teacher.encoder.layers[0].attention.q_proj.weight
    )
    with torch.no_grad():
        out = student.eval()(torch.randn(1, 8000))
    assert len(out.projections) == 3
    assert all(p.shape == (1, out.hidden_states[-1].shape[1], 768) for p in out.projections)


def test_feature_grad_mult_scales_only_the_cnn_gradient():
    wav, lengths = _batch([8000])
    kw = dict(dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, feature_dropout=0.0)
    plain, scaled = _tiny(**kw), _tiny(feature_grad_mult=0.1, **kw)
    scaled.load_state_dict(plain.state_dict())
    grads = []
    for model in (plain, scaled):
        model(wav, lengths).projections[-1].sum().backward()
        grads.append((model.feature_extractor.conv_layers[0].conv.weight.grad.clone(),
                      model.encoder.layers[0].feed_forward.output_dense.weight.grad.clone()))
    torch.testing.assert_close(grads[1][0], grads[0][0] * 0.1, rtol=1e-3, atol=1e-6)
    torch.testing.assert_close(grads[1][1], grads[0][1])
    with pytest.raises(ConfigError, match="feature_grad_mult"):
        preset_config("tiny-arm", feature_grad_mult=2.0)
