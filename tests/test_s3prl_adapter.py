"""The s3prl upstream adapter against a stand-in for s3prl's hub, Featurizer and runner: the
contract's shapes, padding-exact frames, the Featurizer's length tolerance, frozen eval mode,
and ``armdistill superb`` building the runner's argv and registering the upstream."""

from __future__ import annotations

import json
import pickle
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from armdistill.cli import main
from armdistill.errors import UserError
from armdistill.eval.s3prl_upstream import S3PRLUpstream, load_s3prl_upstream, register_upstream, upstream_factory
from armdistill.eval.superb import RECORD_NAME, run_superb, runner_argv
from armdistill.eval.upstream import StudentUpstream
from armdistill.models.student import Student
from armdistill.teachers import make_random_teacher

# The parts of s3prl that are called: hub lookup by name, the upstream call signature, the
# Featurizer's downsample-rate query, length check (TOLERABLE_SEQLEN_DIFF) and per-utterance cut.
FAKE_INTERFACES = '''
import torch
TOLERABLE_SEQLEN_DIFF = 5

class Featurizer(torch.nn.Module):
    def __init__(self, upstream, feature_selection="hidden_states", **kwargs):
        super().__init__()
        upstream.eval()
        with torch.no_grad():
            feature = upstream([torch.randn(16000)])[feature_selection]
        self.layer_num = len(feature)
        self.output_dim = feature[0].size(-1)
        self.downsample_rate = upstream.get_downsample_rates(feature_selection)
        self.feature_selection = feature_selection

    def forward(self, wavs, features):
        stacked = torch.stack(features[self.feature_selection]).mean(0)
        expected = round(max(len(w) for w in wavs) / self.downsample_rate)
        assert abs(stacked.size(1) - expected) < TOLERABLE_SEQLEN_DIFF
        return [f[: round(len(w) / self.downsample_rate)] for f, w in zip(stacked, wavs)]
'''

FAKE_RUNNER = '''
import argparse, json, os, sys
import torch
from s3prl import hub
from s3prl.upstream.interfaces import Featurizer

parser = argparse.ArgumentParser()
for flag in ("-m", "-u", "-k", "-d", "-c", "-p", "-n", "--device"):
    parser.add_argument(flag)
args = parser.parse_args()
assert os.path.isfile(args.c), args.c
upstream = getattr(hub, args.u)(ckpt=args.k, model_config=None, refresh=False)
featurizer = Featurizer(upstream)
wavs = [torch.randn(n, generator=torch.Generator().manual_seed(n)) for n in (16000, 9000)]
with torch.no_grad():
    feats = featurizer(wavs, upstream(wavs))
# s3prl's checkpoints pickle the runner's arguments; it reloads them with torch.load's defaults.
ckpt = os.path.join(args.p, "states-1.ckpt")
torch.save({"Args": args, "Step": 1}, ckpt)
reloaded = torch.load(ckpt, map_location="cpu")
json.dump({"argv": sys.argv, "cwd": os.getcwd(), "frames": [len(f) for f in feats],
           "dim": featurizer.output_dim, "layers": featurizer.layer_num, "rate": featurizer.downsample_rate,
           "reloaded_mode": reloaded["Args"].m},
          open(os.path.join(args.p, "fake_runner.json"), "w"))
'''


@pytest.fixture
def fake_s3prl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in ``s3prl`` package (hub with one upstream of its own, Featurizer, runner, an ASR
    config) importable for this test only; returns its ``s3prl/`` folder."""
    pkg = tmp_path / "fake_site" / "s3prl"
    (pkg / "upstream").mkdir(parents=True)
    (pkg / "downstream" / "asr").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "upstream" / "__init__.py").write_text("")
    (pkg / "hub.py").write_text("def hubert(ckpt=None, model_config=None, refresh=False):\n    raise AssertionError\n")
    (pkg / "upstream" / "interfaces.py").write_text(textwrap.dedent(FAKE_INTERFACES))
    (pkg / "run_downstream.py").write_text(textwrap.dedent(FAKE_RUNNER))
    (pkg / "downstream" / "asr" / "config.yaml").write_text("runner: {}\n")
    monkeypatch.syspath_prepend(str(pkg.parent))
    for name in [m for m in sys.modules if m == "s3prl" or m.startswith("s3prl.")]:
        monkeypatch.delitem(sys.modules, name)
    yield pkg
    for name in [m for m in sys.modules if m == "s3prl" or m.startswith("s3prl.")]:
        del sys.modules[name]


@pytest.fixture(scope="module")
def tiny_student_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("student")
    Student.from_preset("tiny-arm").save_pretrained(path)
    return path


LENGTHS = (16000, 12345, 7001, 4000)


def batch() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [0.1 * torch.randn(n, generator=g) for n in LENGTHS]


@pytest.mark.parametrize("features", ["hidden", "projections"])
def test_student_contract_and_padding_exact_frames(tiny_student_dir: Path, features: str):
    up = load_s3prl_upstream(tiny_student_dir, features)
    student = up.model
    wavs = batch()
    with torch.no_grad():
        out = up(wavs)
    states = out["hidden_states"]
    expected_count = student.config.num_layers + 1 if features == "hidden" else len(student.config.head_layers)
    assert isinstance(states, list) and len(states) == expected_count
    assert out["last_hidden_state"] is states[-1]
    assert up.get_downsample_rates("hidden_states") == 320
    valid = student.frame_lengths(torch.tensor(LENGTHS)).tolist()
    dim = student.config.dim if features == "hidden" else student.config.proj_dim
    for s in states:
        assert s.shape == (len(wavs), max(valid), dim)
    for i, wav in enumerate(wavs):
        assert abs(valid[i] - round(LENGTHS[i] / 320)) <= 1
        with torch.no_grad():
            alone = up([wav])["hidden_states"]
        for layer, s in enumerate(states):
            assert alone[layer].shape[1] == valid[i]
            torch.testing.assert_close(s[i, : valid[i]], alone[layer][0], atol=1e-5, rtol=0)
            assert torch.count_nonzero(s[i, valid[i]:]) == 0


def test_teacher_contract_and_frozen_eval_mode(tmp_path: Path):
    up = load_s3prl_upstream(f"teacher:{make_random_teacher(tmp_path / 'teacher')}")
    teacher = up.model
    assert up.features is None and up.get_downsample_rates("last_hidden_state") == 320
    up.train()
    assert up.training and not teacher.training
    wavs = batch()[:2]
    with torch.no_grad():
        first, second = up(wavs)["hidden_states"], up(wavs)["hidden_states"]
    assert len(first) == teacher.num_layers + 1
    frames = teacher.frame_lengths(torch.tensor(LENGTHS[:2])).tolist()
    assert first[0].shape[:2] == (2, frames[0])
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    with torch.no_grad():
        alone = up([wavs[1]])["hidden_states"][-1]
    torch.testing.assert_close(first[-1][1, : frames[1]], alone[0], atol=1e-5, rtol=0)


def test_student_stays_in_eval_mode_under_train(tiny_student_dir: Path):
    up = load_s3prl_upstream(tiny_student_dir)
    up.train(True)
    assert not up.model.training and not any(p.requires_grad for p in up.model.parameters())
    wavs = batch()[:1]
    torch.testing.assert_close(up(wavs)["hidden_states"][-1], up(wavs)["hidden_states"][-1], atol=0, rtol=0)


def test_baselines_are_refused():
    with pytest.raises(ValueError, match="s3prl has its own"):
        load_s3prl_upstream("mfcc")


def test_register_refuses_to_shadow_s3prl_upstreams(fake_s3prl: Path, tiny_student_dir: Path):
    import s3prl.hub as hub

    factory = upstream_factory(tiny_student_dir)
    with pytest.raises(ValueError, match="already an s3prl upstream"):
        register_upstream(hub, "hubert", factory)
    with pytest.raises(ValueError, match="identifier"):
        register_upstream(hub, "my-model", factory)
    register_upstream(hub, "armdistill", factory)
    register_upstream(hub, "armdistill", factory)
    built = hub.armdistill(ckpt=str(tiny_student_dir), model_config=None, refresh=False)
    assert isinstance(built, S3PRLUpstream) and built.features == "hidden"


def test_runner_argv_adds_ours_and_absolutises_paths(tmp_path: Path):
    argv = runner_argv("pr", "armd", "/models/s", ["-m", "train", "-p", "exp/pr", "--init_ckpt=ck.pt"], tmp_path)
    assert argv == ["run_downstream.py", "-u", "armd", "-k", "/models/s", "-d", "ctc",
                    "-c", "downstream/ctc/libriphone.yaml", "-m", "train", "-p", str(tmp_path / "exp" / "pr"),
                    f"--init_ckpt={tmp_path / 'ck.pt'}"]
    argv = runner_argv("asr", "armd", "/m", ["-m", "train", "-c", "my.yaml"], tmp_path)
    assert argv[argv.index("-c") + 1] == str(tmp_path / "my.yaml") and argv.count("-c") == 1
    with pytest.raises(ValueError, match="-u: set by armdistill superb"):
        runner_argv("asr", "armd", "/m", ["-u", "hubert"], tmp_path)
    with pytest.raises(ValueError, match="frozen"):
        runner_argv("asr", "armd", "/m", ["-f"], tmp_path)
    with pytest.raises(ValueError, match="task"):
        runner_argv("qbe", "armd", "/m", [], tmp_path)


def test_superb_command_runs_fake_runner_with_registered_upstream(
        fake_s3prl: Path, tiny_student_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    code = main(["superb", "--task", "asr", "--upstream", str(tiny_student_dir), "--student-features",
                 "projections", "--", "-m", "train", "-p", "exp/asr", "--device", "cpu"])
    assert code == 0 and Path.cwd() == tmp_path
    result = json.loads((tmp_path / "exp" / "asr" / "fake_runner.json").read_text())
    assert Path(result["argv"][0]) == fake_s3prl / "run_downstream.py"
    assert result["argv"][1:9] == ["-u", "armdistill", "-k", str(tiny_student_dir), "-d", "asr",
                                   "-c", "downstream/asr/config.yaml"]
    assert result["argv"][9:] == ["-m", "train", "-p", str(tmp_path / "exp" / "asr"), "--device", "cpu"]
    assert Path(result["cwd"]) == fake_s3prl.resolve()
    student = Student.from_pretrained(tiny_student_dir)
    assert result["rate"] == 320 and result["dim"] == student.config.proj_dim
    assert result["layers"] == len(student.config.head_layers)
    valid = student.frame_lengths(torch.tensor([16000, 9000])).tolist()
    assert [abs(f - v) <= 1 for f, v in zip(result["frames"], valid)] == [True, True]
    record = json.loads((tmp_path / "exp" / "asr" / RECORD_NAME).read_text())
    assert record["features"] == "projections" and record["task"] == "asr"
    assert record["fingerprint"] == StudentUpstream(student, "projections").fingerprint()
    # The runner reloaded its own checkpoint; outside the runner the restriction is back.
    assert result["reloaded_mode"] == "train"
    with pytest.raises(pickle.UnpicklingError):
        torch.load(tmp_path / "exp" / "asr" / "states-1.ckpt")


def test_s3prl_root_must_be_the_imported_package(fake_s3prl: Path, tiny_student_dir: Path, tmp_path: Path):
    args = ["-m", "train", "-p", str(tmp_path / "e")]
    assert run_superb("asr", tiny_student_dir, args, root=fake_s3prl, dry_run=True)[1:3] == ["-u", "armdistill"]
    other = tmp_path / "other_checkout" / "s3prl"
    (other / "downstream" / "asr").mkdir(parents=True)
    (other / "run_downstream.py").write_text("")
    (other / "downstream" / "asr" / "config.yaml").write_text("runner: {}\n")
    with pytest.raises(UserError, match="not the s3prl package this environment imports"):
        run_superb("asr", tiny_student_dir, args, root=other, dry_run=True)
    with pytest.raises(FileNotFoundError, match="no run_downstream.py"):
        run_superb("asr", tiny_student_dir, args, root=tmp_path, dry_run=True)


def test_superb_reports_missing_config_and_missing_s3prl(
        fake_s3prl: Path, tiny_student_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    (fake_s3prl / "downstream" / "asr" / "config.yaml").unlink()
    with pytest.raises(FileNotFoundError, match="PyPI package"):
        run_superb("asr", tiny_student_dir, ["-m", "train", "-p", str(tmp_path / "e")], dry_run=True)
    (fake_s3prl / "hub.py").write_text("import torchaudio_that_is_missing\n")
    del sys.modules["s3prl.hub"]
    assert main(["superb", "--task", "asr", "--upstream", str(tiny_student_dir), "--dry-run"]) == 2
    assert "s3prl-venv.md" in capsys.readouterr().err
