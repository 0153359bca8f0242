"""Teacher over transformers models: parity with transformers, masking, padding exactness, freezing."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from transformers import HubertConfig, HubertModel, Wav2Vec2Config, Wav2Vec2Model, WavLMConfig, WavLMModel

from _transformers_parity import assert_matches_transformers, max_diff

from armdistill.frames import conv_output_lengths
from armdistill.models.config import preset_config
from armdistill.models.student import Student
from armdistill.teachers import Teacher, make_random_model, make_random_teacher

TINY = dict(
    conv_dim=[16] * 7, conv_kernel=[10, 3, 3, 3, 3, 2, 2], conv_stride=[5, 2, 2, 2, 2, 2, 2],
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
    num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, mask_time_prob=0.05,
)
CLASSES = {"hubert": (HubertConfig, HubertModel), "wavlm": (WavLMConfig, WavLMModel), "wav2vec2": (Wav2Vec2Config, Wav2Vec2Model)}
CASES = [(kind, pre_ln) for kind in CLASSES for pre_ln in (False, True)]
LENGTHS = torch.tensor([6400, 4321, 2000])


def _reference_model(kind: str, pre_ln: bool) -> torch.nn.Module:
    config_cls, model_cls = CLASSES[kind]
    # Pre-LN models pair with the LayerNorm CNN (as in the Large checkpoints); post-LN with GroupNorm.
    extra = dict(do_stable_layer_norm=True, feat_extract_norm="layer") if pre_ln else {}
    torch.manual_seed(1)
    return model_cls(config_cls(**TINY, **extra)).eval()


@pytest.fixture(scope="module", params=CASES, ids=[f"{k}-{'preln' if p else 'postln'}" for k, p in CASES])
def pair(request, tmp_path_factory):
    """(transformers reference model, Teacher loaded from its saved directory)."""
    reference = _reference_model(*request.param)
    directory = tmp_path_factory.mktemp("teacher")
    reference.save_pretrained(directory)
    return reference, Teacher.from_pretrained(directory)


def _wav(batch: int = 3, samples: int = 6400, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, samples, generator=torch.Generator().manual_seed(seed))


def test_matches_transformers_on_unpadded_input(pair):
    reference, teacher = pair
    wav = _wav()
    with torch.no_grad():
        expected = reference(wav, output_hidden_states=True)
    out = teacher.layer_outputs(wav)
    assert len(out.hidden_states) == teacher.num_layers + 1 == 3
    assert out.hidden_states[0].shape == (3, 19, 32)
    assert out.padding_mask is None and out.lengths is None
    with torch.no_grad():
        assert_matches_transformers(out.hidden_states, expected, reference)


def test_masked_outputs_match_transformers_mask_time_indices(pair):
    reference, teacher = pair
    wav = _wav(seed=1)
    mask = torch.zeros(3, 19, dtype=torch.bool)
    mask[0, 2:9] = mask[1, 10:19] = mask[2, 0:4] = True
    with torch.no_grad():
        expected = reference(wav, mask_time_indices=mask, output_hidden_states=True)
        out = teacher.layer_outputs(wav, mask=mask)
        assert_matches_transformers(out.hidden_states, expected, reference)
    assert (out.hidden_states[1] - teacher.layer_outputs(wav).hidden_states[1]).abs().max() > 1e-3


def test_padded_batch_matches_each_utterance_alone(pair):
    _, teacher = pair
    wav = _wav(seed=2)
    wav[1, 4321:] = 0.0
    wav[2, 2000:] = 0.0
    out = teacher.layer_outputs(wav, LENGTHS)
    expected_frames = conv_output_lengths(LENGTHS, teacher.kernels_strides)
    assert out.lengths.tolist() == expected_frames.tolist() == [19, 13, 6]
    assert out.padding_mask.sum(dim=1).tolist() == [0, 6, 13]
    for i, n in enumerate(LENGTHS.tolist()):
        alone = teacher.layer_outputs(wav[i : i + 1, :n])
        frames = alone.hidden_states[0].shape[1]
        assert frames == out.lengths[i]
        assert max_diff([h[0] for h in alone.hidden_states], [h[i, :frames] for h in out.hidden_states]) < 1e-4


@pytest.mark.parametrize("batch_masked", [True, False])
def test_masked_and_unmasked_equal_separate_passes(pair, batch_masked):
    _, teacher = pair
    teacher.batch_masked = batch_masked
    wav = _wav(seed=3)
    mask = torch.zeros(3, 19, dtype=torch.bool)
    mask[:, 5:12] = True
    masked, unmasked = teacher.masked_and_unmasked(wav, LENGTHS, mask)
    assert max_diff(masked.hidden_states, teacher.layer_outputs(wav, LENGTHS, mask).hidden_states) < 1e-5
    assert max_diff(unmasked.hidden_states, teacher.layer_outputs(wav, LENGTHS).hidden_states) < 1e-5
    assert torch.equal(masked.padding_mask, unmasked.padding_mask)


def test_frozen_eval_and_no_layer_drop(tmp_path):
    model = make_random_model("hubert", layerdrop=0.9, hidden_dropout=0.5, attention_dropout=0.5)
    teacher = Teacher(model)
    teacher.train()
    assert not any(m.training for m in teacher.modules())
    assert not any(p.requires_grad for p in teacher.parameters())
    assert teacher.model.config.layerdrop == 0.0
    wav = _wav(2, 3200)
    first, second = teacher.layer_outputs(wav), teacher.layer_outputs(wav)
    assert max_diff(first.hidden_states, second.hidden_states) == 0.0
    assert not first.hidden_states[-1].requires_grad


def test_normalize_flag_from_preprocessor_config_and_override(tmp_path):
    directory = make_random_teacher(tmp_path / "t", kind="wavlm", normalize=True)
    assert json.loads((directory / "preprocessor_config.json").read_text())["do_normalize"] is True
    teacher = Teacher.from_pretrained(directory)
    assert teacher.normalize is True
    assert Teacher.from_pretrained(directory, normalize=False).normalize is False
    wav = 3.0 * _wav(2, 4000) + 0.5
    with torch.no_grad():
        expected = teacher.model(F.layer_norm(wav, (4000,)), output_hidden_states=True)
        assert_matches_transformers(teacher.layer_outputs(wav).hidden_states, expected, teacher.model)
    # Padded rows are normalised over their valid samples only.
    padded = torch.cat([wav[:1], torch.cat([wav[1:, :2500], torch.full((1, 1500), 7.0)], dim=1)])
    out = teacher.layer_outputs(padded, torch.tensor([4000, 2500]))
    alone = teacher.layer_outputs(wav[1:, :2500])
    assert max_diff([h[0] for h in alone.hidden_states], [h[1, :7] for h in out.hidden_states]) < 1e-4


def test_data2vec_padded_batch_matches_alone():
    teacher = Teacher(make_random_model("data2vec-audio"))
    wav = _wav(2, 4800, seed=4)
    lengths = torch.tensor([4800, 2600])
    out = teacher.layer_outputs(wav, lengths)
    alone = teacher.layer_outputs(wav[1:, :2600])
    assert out.lengths.tolist() == [14, 7]
    assert max_diff([h[0] for h in alone.hidden_states], [h[1, :7] for h in out.hidden_states]) < 1e-4


def test_frames_and_padding_agree_with_student():
    teacher = Teacher(make_random_model("hubert"))
    lengths = torch.arange(400, 40000, 97)
    release_cnn = [(k, s) for _, k, s in preset_config("armhubert").conv_layers]
    assert torch.equal(teacher.frame_lengths(lengths), conv_output_lengths(lengths, release_cnn))
    assert torch.equal(teacher.frame_lengths(lengths), teacher.model._get_feat_extract_output_lengths(lengths))
    assert teacher.downsample == 320
    student = Student.from_preset("tiny-arm").eval()
    wav, lengths = _wav(3, 7000, seed=5), torch.tensor([7000, 5123, 999])
    with torch.no_grad():
        s_out = student(wav, lengths)
    t_out = teacher.layer_outputs(wav, lengths)
    assert torch.equal(s_out.lengths, t_out.lengths)
    assert torch.equal(s_out.padding_mask, t_out.padding_mask)
    assert s_out.hidden_states[0].shape[1] == t_out.hidden_states[0].shape[1]


def test_fingerprint_round_trip_and_sensitivity(tmp_path):
    teacher = Teacher(make_random_model("wav2vec2", seed=3))
    teacher.save_pretrained(tmp_path / "w")
    reloaded = Teacher.from_pretrained(tmp_path / "w")
    assert len(teacher.fingerprint()) == 64
    assert reloaded.fingerprint() == teacher.fingerprint()
    with torch.no_grad():
        reloaded.model.encoder.layers[1].final_layer_norm.bias[0] += 1e-3
    assert reloaded.fingerprint() != teacher.fingerprint()
    assert Teacher(make_random_model("wav2vec2", seed=4)).fingerprint() != teacher.fingerprint()


def test_bad_inputs_get_clear_errors(tmp_path):
    teacher = Teacher(make_random_model("hubert"))
    wav = _wav(2, 3200)
    with pytest.raises(ValueError, match=r"mask: expected shape \[2, 9\], got \[2, 7\]"):
        teacher.layer_outputs(wav, mask=torch.zeros(2, 7, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"lengths: expected sample counts in 1\.\.3200, got \[3200, 3201\]"):
        teacher.layer_outputs(wav, torch.tensor([3200, 3201]))
    with pytest.raises(ValueError, match="no mask embedding"):
        Teacher(make_random_model("hubert", mask_time_prob=0.0)).layer_outputs(wav, mask=torch.ones(2, 9, dtype=torch.bool))
    with pytest.raises(FileNotFoundError, match="config.json"):
        Teacher.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such local file or directory"):
        Teacher.from_pretrained(tmp_path / "missing.pt")
