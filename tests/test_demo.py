"""`armdistill demo`: the shipped teacher, config handling, the corpus cache, the whole pipeline at tiny
scale (report numbers == probe metrics files, valid figures) and the ablation's bookkeeping."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import torch
from matplotlib.image import imread

import armdistill
from armdistill.cli import main
from armdistill.config import ConfigError
from armdistill.data.manifest import read_labels, read_manifest
from armdistill.demo import ablation
from armdistill.demo.config import CONFIG_DIR, DEMO_FILES, load_demo_config
from armdistill.demo.pipeline import run_demo, untrained_student
from armdistill.demo.report import checks
from armdistill.demo.stages import UPSTREAMS, corpus_dir, subset_manifest, synthesise
from armdistill.distill.config import resolve_proj_dim
from armdistill.models.student import Student
from armdistill.teachers import Teacher

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def tiny_overrides(cache: Path) -> list[str]:
    """A 1.5-minute corpus, 3 distillation steps of 8 s, 2-epoch probes on half a minute."""
    return [
        f"cache_dir={cache}", "corpus.minutes=1.5", "probe.train_minutes=0.5", "probe.settings.epochs=2",
        "probe.settings.min_epochs=1", "distill.trainer.max_steps=3", "distill.trainer.val_every_steps=2",
        "distill.trainer.checkpoint_every_steps=3", "distill.trainer.log_every_steps=1",
        "distill.trainer.progress_bar=none", "distill.data.micro_batch_seconds=8.0",
        "distill.data.effective_batch_seconds=8.0",
    ]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def demo_run(cache: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo_out")
    cfg = load_demo_config(CONFIG_DIR / "demo.yaml", tiny_overrides(cache))
    return out, run_demo(cfg, out)


def test_shipped_teacher_shape():
    teacher = Teacher.from_pretrained(armdistill.DEFAULT_TEACHER)
    assert (teacher.num_layers, teacher.dim, teacher.downsample, teacher.normalize) == (6, 256, 320, False)
    out = teacher.layer_outputs(torch.zeros(1, 16000), torch.tensor([16000]))
    assert len(out.hidden_states) == 7 and out.hidden_states[-1].shape == (1, 49, 256)


@pytest.mark.parametrize("mode", sorted(DEMO_FILES))
def test_shipped_demo_files_fit_the_teacher(mode: str):
    cfg = load_demo_config(CONFIG_DIR / DEMO_FILES[mode])
    student = resolve_proj_dim(cfg.distill, 256).student_model
    assert (cfg.corpus.minutes, cfg.corpus.seed) == (30.0, 0)  # the teacher's pretraining corpus
    assert student.downsample == 320 and student.proj_dim == 256
    assert len(cfg.distill.loss.layer_map) == student.num_layers and max(cfg.distill.loss.layer_map) <= 5
    assert cfg.distill.student["reuse_mode"] == "paper"


def test_config_errors_name_file_and_key(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"demo\.yaml: .*probe\.settings\.epochz"):
        load_demo_config(CONFIG_DIR / "demo.yaml", ["probe.settings.epochz=3"])
    with pytest.raises(ConfigError, match=r"distill\.trainer\..*max_steps: must be positive"):
        load_demo_config(CONFIG_DIR / "demo.yaml", ["distill.trainer.max_steps=-1"])
    with pytest.raises(ConfigError, match="missing.yaml: demo config not found"):
        load_demo_config(tmp_path / "missing.yaml")
    assert main(["demo", "--out", str(tmp_path / "x"), "corpus.minutes=0"]) == 2


def test_untrained_student_is_seeded():
    cfg = load_demo_config(CONFIG_DIR / "demo.yaml")
    a, b = untrained_student(cfg, 256), untrained_student(cfg, 256)
    other = untrained_student(load_demo_config(CONFIG_DIR / "demo.yaml", ["distill.seed=1"]), 256)
    key = "encoder.layers.0.attention.q_proj.weight"
    assert torch.equal(a.state_dict()[key], b.state_dict()[key])
    assert not torch.equal(a.state_dict()[key], other.state_dict()[key])


def test_checks():
    per = {"teacher": 0.2, "student": 0.25, "student_untrained": 0.8, "mfcc": 0.6, "mfcc_context": 0.5}
    assert checks(per, 0.1) == {"student_below_untrained": True, "student_below_mfcc": True,
                                "student_minus_teacher": 0.05, "teacher_margin": 0.1, "within_teacher_margin": True}
    assert not checks({**per, "student": 0.65}, 0.1)["student_below_mfcc"]
    assert not checks(per, 0.01)["within_teacher_margin"]


def test_synthesis_is_cached(demo_run: tuple[Path, dict], cache: Path):
    cfg = load_demo_config(CONFIG_DIR / "demo.yaml", tiny_overrides(cache))
    corpus = corpus_dir(cfg)
    assert corpus == cache / "synth" / "speech-1.5min-seed0"
    before = {p: p.stat().st_mtime_ns for p in corpus.rglob("*") if p.is_file()}
    assert synthesise(cfg) == corpus
    assert {p: p.stat().st_mtime_ns for p in corpus.rglob("*") if p.is_file()} == before


def test_subset_manifest(demo_run: tuple[Path, dict], cache: Path, tmp_path: Path):
    corpus = cache / "synth" / "speech-1.5min-seed0"
    full = read_manifest(corpus / "train.tsv")
    sub_path = subset_manifest(corpus / "train.tsv", 0.25, tmp_path / "sub.tsv")
    sub = read_manifest(sub_path)
    n = len(sub)
    assert 0 < n < len(full) and sub.paths == full.paths[:n] and sub.root == full.root
    # the first utterances that reach 15 s: one fewer falls short
    assert sum(sub.num_samples) >= 15 * 16000 > sum(sub.num_samples[:-1])
    for ext in ("phn", "wrd", "spk"):
        assert read_labels(sub_path, ext) == read_labels(corpus / "train.tsv", ext)[:n]
    assert subset_manifest(corpus / "train.tsv", None, tmp_path / "all.tsv") == corpus / "train.tsv"


def test_report_equals_probe_metrics(demo_run: tuple[Path, dict]):
    out, report = demo_run
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk == report
    assert set(report["per"]) == set(UPSTREAMS)
    for name in UPSTREAMS:
        metrics = json.loads((out / "probes" / name / "metrics.json").read_text())
        assert report["per"][name] == metrics["test"]
        assert report["valid_per"][name] == metrics["valid"]
        assert report["metrics_files"][name] == str(out / "probes" / name / "metrics.json")
    assert report["checks"] == checks(report["per"], 0.1)
    # every upstream was probed with the same settings
    configs = {json.dumps(json.loads((out / "probes" / n / "metrics.json").read_text())["config"]) for n in UPSTREAMS}
    assert len(configs) == 1
    assert report["distill"]["steps"] == 3
    stages = report["stage_seconds"].values()
    assert report["wall_seconds"] + 0.005 * (len(stages) + 1) >= sum(stages)  # each value rounded to 0.01 s
    md = (out / "report.md").read_text()
    for name in UPSTREAMS:
        assert f"| {name} | {report['per'][name]:.3f} |" in md


def test_student_probe_uses_the_distilled_weights(demo_run: tuple[Path, dict]):
    out, report = demo_run
    trained = Student.from_pretrained(out / "distill" / "student")
    metrics = json.loads((out / "probes" / "student" / "metrics.json").read_text())
    untrained = json.loads((out / "probes" / "student_untrained" / "metrics.json").read_text())
    assert metrics["layer_names"] == ["input"] + [f"layer {i}" for i in range(1, 5)]
    assert metrics["fingerprint"] != untrained["fingerprint"]
    assert report["params"]["student"] == trained.num_parameters()


def test_figures_are_pngs(demo_run: tuple[Path, dict]):
    out, report = demo_run
    assert set(report["figures"]) == {"curves", "per", "attention"}
    for name in report["figures"].values():
        path = out / name
        assert path.read_bytes()[:8] == PNG_MAGIC
        image = imread(path)
        assert image.shape[0] > 100 and image.shape[1] > 100
        assert image[..., :3].std() > 0.01  # something was drawn


def test_ablation_variants_match_in_size():
    base = load_demo_config(CONFIG_DIR / "demo-ablation.yaml")
    sizes = {}
    for variant in ablation.VARIANTS:
        cfg = ablation.variant_config(base, variant, seed=2, steps=7)
        assert (cfg.distill.seed, cfg.probe.settings.seed, cfg.distill.trainer.max_steps) == (2, 2, 7)
        sizes[variant.key] = Student(resolve_proj_dim(cfg.distill, 256).student_model).num_parameters()["params_total"]
    assert abs(sizes["all_attention"] - sizes["reference"]) / sizes["reference"] < 0.001
    by_key = {v.key: ablation.variant_config(base, v, 0).distill for v in ablation.VARIANTS}
    assert by_key["release_reuse"].student["reuse_mode"] == "release"
    assert (by_key["layer_objective"].loss.objective, by_key["layer_objective"].loss.target_norm) == ("layer", "layer")
    assert (by_key["layer_objective_raw"].loss.objective, by_key["layer_objective_raw"].loss.target_norm) == ("layer", "none")
    assert (by_key["raw_targets"].loss.objective, by_key["raw_targets"].loss.target_norm) == ("masking", "none")
    assert by_key["mask_prob_04"].mask.mask_prob == 0.4 and base.distill.mask.mask_prob == 0.8
    assert (base.distill.loss.objective, base.distill.loss.target_norm) == ("masking", "layer")
    # a variant brings the one it is compared against
    assert [v.key for v in ablation.selected(["layer_objective_raw"])] == ["reference", "layer_objective", "layer_objective_raw"]
    with pytest.raises(ConfigError, match="ablation.variants: unknown variant 'bogus'"):
        ablation.selected(["bogus"])


def test_paired_difference_finds_a_planted_difference():
    # seeds differ a lot (0.2 apart), the variant is 0.10 +- 0.02 worse on every seed
    baseline = {0: 0.30, 1: 0.50, 2: 0.70}
    variant = {0: 0.40, 1: 0.62, 2: 0.78}
    diff = ablation.paired_difference(variant, baseline)
    assert diff["seeds"] == [0, 1, 2]
    assert diff["per_seed"] == pytest.approx([0.10, 0.12, 0.08])
    assert diff["mean"] == pytest.approx(0.10) and diff["sd"] == pytest.approx(0.02)
    half = 4.302653 * 0.02 / 3**0.5  # t quantile 0.975 with 2 degrees of freedom
    assert diff["interval"] == pytest.approx([0.10 - half, 0.10 + half], abs=1e-6)
    assert ablation.verdict(diff) == "worse"
    # unpaired, the seed spread (sd 0.2) would hide it; paired, a difference of zero does not hold up
    assert ablation.verdict(ablation.paired_difference(baseline, variant)) == "better"
    noisy = ablation.paired_difference({0: 0.40, 1: 0.45, 2: 0.78}, baseline)
    assert noisy["interval"][0] < 0 < noisy["interval"][1] and ablation.verdict(noisy) == "no measurable difference"
    # only common seeds pair; one seed gives no interval
    single = ablation.paired_difference({0: 0.4, 5: 0.9}, baseline)
    assert (single["seeds"], single["sd"], single["interval"]) == ([0], None, None)
    assert ablation.verdict(single) == "too few seeds to say"


def test_ablation_table():
    params = {"params_backbone": 1000, "params_heads": 10}

    def runs(pers: list[float]) -> dict:
        return {"runs": [{"seed": s, "per": p, "params": params, "distill_seconds": 10.0, "cpu_seconds": 9.0}
                         for s, p in enumerate(pers)]}

    rows = [{"key": "reference", "label": "a", "against": "reference", "schedules": {"5": runs([0.2, 0.3, 0.4]), "10": runs([0.2, 0.2, 0.3])}},
            {"key": "b", "label": "b", "against": "reference", "schedules": {"5": runs([0.3, 0.4, 0.5]), "10": runs([0.2, 0.3, 0.2])}}]
    ablation.summarise(rows, [5, 10])
    text = ablation.table(rows, 0.1, [0, 1, 2], [5, 10])
    sd = statistics.stdev([0.2, 0.3, 0.4])
    assert f"| a | 1,000 + 10 | 0.300 +- {sd:.3f} | 0.200, 0.300, 0.400 | - | - | - | 10 (9) |" in text
    assert rows[1]["schedules"]["5"]["difference"]["per_seed"] == pytest.approx([0.1, 0.1, 0.1])
    assert "| b | 1,000 + 10 | 0.400 +- 0.100 | 0.300, 0.400, 0.500 | +0.100 +- 0.000 vs reference | [+0.100, +0.100] | worse |" in text
    assert rows[0]["longer_minus_first"]["10"]["per_seed"] == pytest.approx([0.0, -0.1, -0.1])
    assert "- reference: PER at 10 minus at 5 steps: -0.067 +- 0.058" in text
    assert text.count("| teacher (same probe) | - | 0.100 |") == 2


def test_ablation_runs_in_parallel_and_resumes(demo_run: tuple[Path, dict], cache: Path, tmp_path: Path):
    base = load_demo_config(CONFIG_DIR / "demo-ablation.yaml", tiny_overrides(cache) + [
        "ablation.steps=[1,2]", "ablation.jobs=2", "ablation.variants=[release_reuse, suggested_pattern]"])
    ablation.run_ablation(base, tmp_path, [0])
    summary = json.loads((tmp_path / "ablation.json").read_text())
    keys = [row["key"] for row in summary["variants"]]
    assert keys == ["reference", "release_reuse", "suggested_pattern"] and summary["steps"] == [1, 2]
    # the suggested pattern is tiny-arm's own alternation: the reference's runs, not a repeat of them
    suggested = summary["variants"][2]
    assert suggested["same_runs_as"] == "reference" and not (tmp_path / "suggested_pattern").exists()
    for steps in ("1", "2"):
        assert suggested["schedules"][steps]["runs"] == summary["variants"][0]["schedules"][steps]["runs"]
        assert suggested["schedules"][steps]["verdict"] == "same runs as reference"
    for row in summary["variants"][:2]:
        for steps in (1, 2):
            run_dir = tmp_path / row["key"] / f"steps{steps}" / "seed0"
            metrics = json.loads((run_dir / "probe" / "metrics.json").read_text())
            assert row["schedules"][str(steps)]["runs"][0]["per"] == metrics["test"]
            assert json.loads((run_dir / "distill" / "student" / "distill.json").read_text())["global_step"] == steps
    release = summary["variants"][1]["schedules"]["2"]
    reference = summary["variants"][0]["schedules"]["2"]
    assert release["difference"]["per_seed"] == [release["runs"][0]["per"] - reference["runs"][0]["per"]]
    config = json.loads((tmp_path / "release_reuse" / "steps1" / "seed0" / "distill" / "student" / "config.json").read_text())
    assert config["reuse_mode"] == "release"
    done = [tmp_path / "reference" / "steps2" / "seed0" / "result.json", tmp_path / "teacher" / "metrics.json"]
    stamps = [path.stat().st_mtime_ns for path in done]
    ablation.run_ablation(base, tmp_path, [0])
    assert [path.stat().st_mtime_ns for path in done] == stamps
