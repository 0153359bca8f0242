"""``armdistill report``: params, MACs and probe metrics of two fake runs in one table, with the
published rows for the tasks the runs were probed on, and a plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from armdistill.cli import main
from armdistill.eval.report import PUBLISHED, build_report, collect_run
from armdistill.models.commands import model_info
from armdistill.models.student import Student


def probe_metrics(path: Path, task: str, scores: dict[str, float], features: str | None = "hidden") -> None:
    path.mkdir(parents=True)
    metric = {"pr": "per", "asr": "wer"}.get(task, "accuracy")
    path.joinpath("metrics.json").write_text(json.dumps({
        "task": task, "metric": metric, "test": scores[metric], "test_scores": scores, "student_features": features}))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Student]:
    root = tmp_path_factory.mktemp("runs")
    torch.manual_seed(0)
    student = Student.from_preset("tiny-arm")
    student.save_pretrained(root / "arm" / "student")
    (root / "arm" / "student" / "distill.json").write_text(json.dumps({"config": {"teacher": {"path": "/t/hubert"}}}))
    probe_metrics(root / "arm" / "probe-pr", "pr", {"per": 0.3125})
    probe_metrics(root / "arm" / "probe-ks", "ks", {"accuracy": 0.875})
    probe_metrics(root / "mfcc" / "pr", "pr", {"per": 0.4321}, features=None)
    return root / "arm", root / "mfcc", student


def table_rows(markdown: str) -> dict[str, list[str]]:
    rows = {}
    for line in markdown.splitlines():
        if line.startswith("| ") and not line.startswith("| model"):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            rows[cells[0]] = cells
    return rows


def test_report_table_numbers_and_published_rows(runs, tmp_path: Path):
    arm, mfcc, student = runs
    result = build_report([arm, mfcc], tmp_path / "out", names=["ARM tiny", "MFCC"], macs_seconds=1.0)
    text = result["markdown"].read_text()
    header = next(line for line in text.splitlines() if line.startswith("| model"))
    assert header.endswith("| teacher | PR PER% | KS acc% |")
    rows = table_rows(text)
    info = model_info(student, 1.0)
    assert rows["ARM tiny"][2:] == [f"{info['params_total'] / 1e6:.2f}", f"{info['params_heads'] / 1e6:.2f}",
                                    f"{info['gmacs_per_second']:.2f}", "/t/hubert", "31.25", "87.50"]
    assert rows["MFCC"][2:] == ["-", "-", "-", "-", "43.21", "-"]
    # Published rows carry their PR and KS figures only (the tasks probed), with their source paper.
    assert rows["ARMHuBERT (heads)"][1:] == ["Recycle-and-Distill (Interspeech 2023)", "26.45", "-", "-",
                                             "HuBERT Base (960h)", "7.72", "96.88"]
    assert rows["DistilHuBERT"][-2:] == ["16.27", "95.98"]
    published = json.loads(PUBLISHED.read_text())["rows"]
    assert len(result["published"]) == len(published)
    assert all(set(r.metrics) == {"pr", "ks"} for r in result["published"])
    png = result["figure"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_report_without_published_and_feature_columns(runs, tmp_path: Path):
    arm, _, _ = runs
    probe_metrics(tmp_path / "run" / "pr-proj", "pr", {"per": 0.25}, features="projections")
    probe_metrics(tmp_path / "run" / "pr-hidden", "pr", {"per": 0.5})
    result = build_report([tmp_path / "run"], tmp_path / "out", include_published=False)
    text = result["markdown"].read_text()
    assert "| PR PER% | PR PER% (projections) |" in text
    assert table_rows(text)["run"][-2:] == ["50.00", "25.00"]
    assert "Recycle-and-Distill" not in text


def test_report_errors_name_the_files(tmp_path: Path):
    probe_metrics(tmp_path / "dup" / "a", "pr", {"per": 0.1})
    probe_metrics(tmp_path / "dup" / "b", "pr", {"per": 0.2})
    with pytest.raises(ValueError, match=r"two pr results, .*a/metrics\.json and .*b/metrics\.json"):
        collect_run(tmp_path / "dup")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="neither a student directory"):
        collect_run(tmp_path / "empty")
    (tmp_path / "bad" / "x").mkdir(parents=True)
    (tmp_path / "bad" / "x" / "metrics.json").write_text('{"task": "qbe"}')
    with pytest.raises(ValueError, match=r"x/metrics\.json: task: expected one of \[.*\], got 'qbe'"):
        collect_run(tmp_path / "bad")


def test_report_cli(runs, tmp_path: Path, capsys: pytest.CaptureFixture):
    arm, mfcc, _ = runs
    assert main(["report", str(arm), str(mfcc), "--out", str(tmp_path / "o"), "--seconds", "1"]) == 0
    out = capsys.readouterr().out
    assert "| arm | this project |" in out and (tmp_path / "o" / "report.png").is_file()
    assert main(["report", str(arm), "--out", str(tmp_path / "o"), "--names", "a", "b"]) == 2
