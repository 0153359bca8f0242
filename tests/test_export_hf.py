"""``export --format hf``: native HubertModel and generated remote-code exports, loaded by
transformers in a process where armdistill cannot be imported, against the student's own outputs."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from armdistill.cli import main
from armdistill.errors import UserError
from armdistill.eval.upstream import StudentUpstream
from armdistill.export.hf import export, teacher_normalize
from armdistill.models.release import import_release
from armdistill.models.student import Student
from test_release_import import _write_release_ckpt

HERE = Path(__file__).parent
TOL = 1e-5
SHORT = 9600  # samples of the padded batch's second utterance
# name -> (preset, overrides); "native" ones compute attention in every layer with paper/explicit maths
STUDENTS = {
    "native": ("tiny-mask", {}),
    # pre-LN, a feature projection (CNN 128 -> 96), heads reading chosen layers
    "native-preln": ("tiny-mask", dict(reuse_mode="explicit", layer_norm_first=True, dim=96, ffn_dim=192,
                                       proj_dim=64, head_inputs=[3, 3])),
    "arm-paper": ("tiny-arm", {}),
    "arm-explicit": ("tiny-arm", dict(reuse_mode="explicit", reuse_pattern=[True, False, False, True])),
    "arm-release": ("tiny-arm", dict(reuse_mode="release")),
}
NATIVE = {"native", "native-preln"}


def _student(preset: str, overrides: dict, seed: int) -> Student:
    torch.manual_seed(seed)
    student = Student.from_preset(preset, **overrides)
    with torch.no_grad():  # every tensor away from its init, so a misplaced one shows
        for p in student.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return student.eval()


def _inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    wav = torch.randn(2, 16000, generator=g)
    mask = torch.ones(2, 16000, dtype=torch.long)
    mask[1, SHORT:] = 0
    return {"wav": wav, "padded": wav * mask, "mask": mask}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    out = {}
    for seed, (name, (preset, overrides)) in enumerate(STUDENTS.items()):
        student = _student(preset, overrides, seed)
        student.save_pretrained(root / f"student-{name}")
        out[name] = (student, root / f"student-{name}", root / f"export-{name}")
    student, sdir, _ = out["native"]
    # a distilled student's record and two probe results, one of them of another upstream
    (sdir / "distill.json").write_text(json.dumps({
        "config": {"teacher": {"path": "org/teacher", "normalize": True}, "loss": {"objective": "masking"},
                   "data": {"train": "train.tsv"}, "student": {"preset": "tiny-mask"}},
        "teacher_fingerprint": "f" * 64, "global_step": 123, "git_revision": "abc"}))
    probes = root / "probes"
    for task, fingerprint, value in (("pr", StudentUpstream(student).fingerprint(), 0.4321),
                                     ("ks", "student:hidden:other", 0.9)):
        (probes / task).mkdir(parents=True)
        (probes / task / "metrics.json").write_text(json.dumps(
            {"task": task, "fingerprint": fingerprint, "metric": "per", "test_scores": {"per": value, "accuracy": value}}))
    for name, (_, sdir, edir) in out.items():
        extra = ["--probes", str(probes)] if name == "native" else []
        assert main(["export", str(sdir), str(edir), "--format", "hf", *extra]) == 0
    return out


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """A released ARMHuBERT checkpoint (random weights, the release's layout) through import-release and export."""
    root = tmp_path_factory.mktemp("release")
    _write_release_ckpt(root / "armhubert.ckpt", "armhubert")
    assert main(["import-release", str(root / "armhubert.ckpt"), str(root / "student")]) == 0
    assert main(["export", str(root / "student"), str(root / "export"), "--format", "hf"]) == 0
    return import_release(root / "armhubert.ckpt").eval(), root / "export"


@pytest.fixture(scope="module")
def loaded(exported, released, tmp_path_factory):
    """Every export loaded by transformers in a fresh interpreter where ``import armdistill`` fails."""
    root = tmp_path_factory.mktemp("child")
    save_file(_inputs(), str(root / "inputs.safetensors"))
    jobs = {name: {"dir": str(edir), "remote": name not in NATIVE, "finetune": True} for name, (_, _, edir) in exported.items()}
    jobs["release"] = {"dir": str(released[1]), "remote": True, "finetune": False}
    env = {"PATH": os.environ["PATH"], "HOME": str(root), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "HF_MODULES_CACHE": str(root / "modules")}
    job = json.dumps({"inputs": str(root / "inputs.safetensors"), "out": str(root), "exports": jobs})
    result = subprocess.run([sys.executable, "-I", str(HERE / "_hf_child.py"), job], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return {name: (report[name], load_file(str(root / f"{name}.safetensors"))) for name in jobs}


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return float((a - b).abs().max())


def test_all_attention_students_export_as_plain_hubert_models(exported, loaded):
    for name, (_, _, edir) in exported.items():
        report = loaded[name][0]
        config = json.loads((edir / "config.json").read_text())
        code = sorted(p.name for p in edir.glob("*.py"))
        if name in NATIVE:
            assert (report["class"], config["model_type"], code) == ("HubertModel", "hubert", [])
            assert report["module"].startswith("transformers.models.hubert") and "auto_map" not in config
        else:
            assert (report["class"], config["model_type"]) == ("ArmdistillModel", "armdistill")
            assert report["module"].startswith("transformers_modules.")
            assert code == ["configuration_armdistill.py", "modeling_armdistill.py"]
            assert set(config["auto_map"]) == {"AutoConfig", "AutoModel", "AutoModelForCTC", "AutoModelForAudioClassification"}


@pytest.mark.parametrize("name", [*STUDENTS, "release"])
def test_transformers_hidden_states_equal_ours(exported, released, loaded, name):
    student = released[0] if name == "release" else exported[name][0]
    theirs = loaded[name][1]
    with torch.no_grad():
        ours = student(_inputs()["wav"])
    n = student.config.num_layers + 1
    assert sum(k.startswith("hidden.") for k in theirs) == n
    diffs = [_max_diff(ours.hidden_states[i], theirs[f"hidden.{i}"]) for i in range(n - 1)]
    # transformers reports a pre-LN stack's last layer before the final LayerNorm; last_hidden_state is after it
    diffs.append(_max_diff(ours.hidden_states[-1], theirs["last" if student.config.layer_norm_first else f"hidden.{n - 1}"]))
    assert max(diffs) <= TOL, diffs
    if student.config.layer_norm_first:
        assert _max_diff(ours.hidden_states[-1], theirs[f"hidden.{n - 1}"]) > 1e-2
    projections = [theirs[f"projection.{k}"] for k in range(len(student.config.head_layers))]
    assert len(projections) == len(ours.projections) > 0
    assert max(_max_diff(a, b) for a, b in zip(ours.projections, projections)) <= TOL


@pytest.mark.parametrize("name", list(STUDENTS))
def test_padding_behaviour_is_what_the_card_states(exported, loaded, name):
    student, _, edir = exported[name]
    theirs = loaded[name][1]
    with torch.no_grad():
        alone = student(_inputs()["wav"][1:, :SHORT]).hidden_states
    frames = alone[0].shape[1]
    diff = max(_max_diff(theirs[f"padded.{i}"][1, :frames], a[0]) for i, a in enumerate(alone[:-1]))
    card = (edir / "README.md").read_text()
    if name in NATIVE or name == "arm-release":
        assert diff > 1e-3 and "differ" in card.split("## Padding")[1]
    else:
        assert diff <= TOL and "Padding-exact" in card


@pytest.mark.parametrize("name", list(STUDENTS))
def test_one_finetuning_step_reaches_every_layer(exported, loaded, name):
    report = loaded[name][0]
    layers = exported[name][0].config.num_layers
    prefix = "Hubert" if name in NATIVE else "Armdistill"
    for task, cls in (("ctc", "ForCTC"), ("classification", "ForSequenceClassification")):
        step = report[task]
        assert step["class"] == prefix + cls
        assert torch.isfinite(torch.tensor(step["loss"])) and step["loss"] > 0
        assert step["groups"] == {**{f"layer {i}": True for i in range(layers)}, "cnn": True, "head": True}
    assert report["classification"]["layer_weights"] == pytest.approx([1 / (layers + 1)] * (layers + 1))


@pytest.mark.parametrize("name", [*STUDENTS, "release"])
def test_student_from_pretrained_reads_an_export_back(exported, released, name):
    original, edir = (released[0], released[1]) if name == "release" else (exported[name][0], exported[name][2])
    back = Student.from_pretrained(edir)
    assert back.config == original.config
    ours, theirs = original.state_dict(), back.state_dict()
    assert list(ours) == list(theirs) and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_release_students_are_republished_as_safetensors(released):
    _, edir = released
    files = sorted(p.name for p in edir.iterdir())
    assert files == ["README.md", "config.json", "configuration_armdistill.py", "heads.json", "heads.safetensors",
                     "model.safetensors", "modeling_armdistill.py", "preprocessor_config.json"]
    config = json.loads((edir / "config.json").read_text())
    assert config["armdistill_student"]["reuse_mode"] == "release"
    card = (edir / "README.md").read_text()
    assert "| preset | armhubert |" in card and "26,448,448" in card and "C R C R C R C R C R C R" in card


def test_generated_code_imports_torch_and_transformers_only(exported):
    allowed = set(sys.stdlib_module_names) | {"torch", "transformers", "safetensors", "huggingface_hub", "yaml"}
    edir = exported["arm-paper"][2]
    for path in edir.glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0}
        assert imported <= allowed, (path.name, imported - allowed)
    relative = [n.module for n in ast.walk(ast.parse((edir / "modeling_armdistill.py").read_text()))
                if isinstance(n, ast.ImportFrom) and n.level == 1]
    assert relative == ["configuration_armdistill"]


def test_model_card_and_preprocessor_carry_the_run(exported):
    edir = exported["native"][2]
    card = (edir / "README.md").read_text()
    assert "f" * 64 in card and "`masking`" in card and "optimiser steps: 123" in card and "| preset | tiny-mask |" in card
    assert "| pr | PR PER% | hidden | 43.21 |" in card and "| ks |" not in card
    preprocessor = json.loads((edir / "preprocessor_config.json").read_text())
    assert preprocessor["do_normalize"] is True and preprocessor["return_attention_mask"] is True
    assert preprocessor["sampling_rate"] == 16000 and preprocessor["feature_extractor_type"] == "Wav2Vec2FeatureExtractor"
    assert json.loads((edir / "distill.json").read_text())["global_step"] == 123
    heads = json.loads((exported["native-preln"][2] / "heads.json").read_text())
    assert heads["head_layers"] == [3, 3] and heads["proj_dim"] == 64


def test_export_refuses_a_non_empty_output_directory(exported, tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(UserError, match="not an empty directory"):
        export(exported["native"][1], tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_teacher_normalisation_comes_from_the_record_else_the_teacher(tmp_path):
    (tmp_path / "preprocessor_config.json").write_text('{"do_normalize": true}')

    def record(path, normalize):
        return {"config": {"teacher": {"path": str(path), "normalize": normalize}}}

    assert teacher_normalize(record(tmp_path, None)) is True  # null: the teacher's own flag
    assert teacher_normalize(record(tmp_path, False)) is False
    assert teacher_normalize(record("org/never-downloaded", None)) is None
    assert teacher_normalize({}) is None
