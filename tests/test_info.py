"""``armdistill info``: the parameter and MAC figures users compare against the paper."""

import json

import pytest
from transformers import HubertConfig, HubertModel

from armdistill.cli import main
from armdistill.models.macs import count_macs

HUBERT_BASE_GMACS_PER_SECOND = 7.407  # 74.07 GMACs per 10 s, eager attention


@pytest.fixture(scope="module")
def hubert_base_gmacs():
    model = HubertModel(HubertConfig(layerdrop=0.0, attn_implementation="eager")).eval()
    return count_macs(lambda wav: model(wav), seconds=10.0) / 10 / 1e9


def test_hubert_base_counts_as_published(hubert_base_gmacs):
    assert hubert_base_gmacs == pytest.approx(HUBERT_BASE_GMACS_PER_SECOND, abs=0.01)


def _info(capsys, *args):
    assert main(["info", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(
    "preset,total,backbone",
    [("armhubert", 26448448, 22015552), ("armhubert-s", 22394080, 18403552), ("maskhubert", 26635840, 22202944)],
)
def test_info_reports_exact_counts(capsys, preset, total, backbone):
    info = _info(capsys, "--preset", preset, "--seconds", "1")
    assert (info["params_total"], info["params_backbone"]) == (total, backbone)
    assert info["params_heads"] == total - backbone
    assert info["frame_rate_hz"] == 50.0


def test_armhubert_macs_are_about_30_percent_of_the_teacher(capsys, hubert_base_gmacs):
    paper = _info(capsys, "--preset", "armhubert")
    explicit = _info(capsys, "--preset", "armhubert", "--reuse-mode", "explicit")
    assert paper["reuse_mode"] == "paper" and paper["reuse_pattern"] == [True, False] * 6
    assert 0.27 < paper["gmacs_per_second"] / hubert_base_gmacs < 0.33
    # Reusing layers recompute Q_prev K_prev^T on the SDPA route; applying a stored map saves it.
    assert paper["gmacs_per_second"] == pytest.approx(2.3026, abs=1e-3)
    assert explicit["gmacs_per_second"] == pytest.approx(2.2309, abs=1e-3)


def test_info_on_a_saved_model(capsys, tmp_path):
    from armdistill.models.student import Student

    Student.from_preset("tiny-arm").save_pretrained(tmp_path / "m")
    info = _info(capsys, str(tmp_path / "m"), "--seconds", "2")
    assert info["params_total"] == Student.from_preset("tiny-arm").num_parameters()["params_total"]
    assert main(["info", str(tmp_path / "missing"), "--json"]) == 2
    assert "missing" in capsys.readouterr().err
