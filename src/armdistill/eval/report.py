"""One table and one figure comparing models: size, compute and probe results.

A run directory holds a student (a ``save_pretrained`` directory, usually with ``distill.json``,
either the run directory itself, ``RUN/student`` or its only student subdirectory) and/or probe
outputs (``metrics.json`` from ``armdistill probe --out``, anywhere below it). Published SUPERB
figures (``published.json``, with the papers they come from) are set alongside for the tasks
the runs were probed on; they are comparable only to probes run on SUPERB's own data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from armdistill.checks import check_choice
from armdistill.config import ConfigError
from armdistill.distill.export import INFO_NAME
from armdistill.errors import FileFormatError, MissingFileError
from armdistill.eval.upstream import is_student_dir
from armdistill.models.commands import model_info
from armdistill.models.student import Student

PUBLISHED = Path(__file__).with_name("published.json")
METRICS_NAME = "metrics.json"
# Task -> (column title, probe metric it shows); values are percentages.
TASK_COLUMNS: dict[str, tuple[str, str]] = {
    "pr": ("PR PER%", "per"),
    "asr": ("ASR WER%", "wer"),
    "ks": ("KS acc%", "accuracy"),
    "ic": ("IC acc%", "accuracy"),
    "sid": ("SID acc%", "accuracy"),
    "er": ("ER acc%", "accuracy"),
}
LOWER_IS_BETTER = {"pr", "asr"}


@dataclass
class Row:
    """One model: ``metrics`` maps a column key (task, or ``task:features``) to a percentage."""

    name: str
    source: str
    params_m: float | None = None
    heads_m: float | None = None
    gmacs_per_second: float | None = None
    teacher: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise FileFormatError(f"{path}: not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise FileFormatError(f"{path}: expected a JSON object")
    return data


def find_student(run_dir: Path) -> Path | None:
    """The run's student directory: the run itself, ``student/``, or its only student subfolder."""
    if is_student_dir(run_dir):
        return run_dir
    if is_student_dir(run_dir / "student"):
        return run_dir / "student"
    found = sorted(p for p in run_dir.iterdir() if p.is_dir() and is_student_dir(p))
    if len(found) > 1:
        raise FileFormatError(f"{run_dir}: several student directories ({', '.join(p.name for p in found)}); "
                         "pass the one to report")
    return found[0] if found else None


def column_key(metrics: dict[str, Any], path: Path) -> str:
    task = metrics.get("task")
    check_choice(f"{path}: task", task, list(TASK_COLUMNS), error=FileFormatError)
    features = metrics.get("student_features")
    return task if features in (None, "hidden") else f"{task}:{features}"


def probe_value(metrics: dict[str, Any], path: Path) -> float:
    """The test metric of a probe's ``metrics.json`` as a percentage."""
    metric = TASK_COLUMNS[metrics["task"]][1]
    scores = metrics.get("test_scores", {})
    value = scores.get(metric, metrics.get("test") if metrics.get("metric") == metric else None)
    if not isinstance(value, (int, float)):
        raise FileFormatError(f"{path}: no test {metric} (expected 'test_scores.{metric}')")
    return 100.0 * float(value)


def collect_run(run_dir: str | Path, name: str | None = None, macs_seconds: float = 10.0) -> Row:
    """Parameters and MACs of the run's student, its teacher and every probe result below it."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise MissingFileError(f"{run_dir}: run directory not found")
    row = Row(name=name or run_dir.resolve().name, source="this project")
    student_dir = find_student(run_dir)
    if student_dir is not None:
        info = model_info(Student.from_pretrained(student_dir), macs_seconds)
        row.params_m = info["params_total"] / 1e6
        row.heads_m = info["params_heads"] / 1e6
        row.gmacs_per_second = info["gmacs_per_second"]
        row.files.append(str(student_dir))
        if (student_dir / INFO_NAME).is_file():
            config = _read_json(student_dir / INFO_NAME).get("config", {})
            row.teacher = (config.get("teacher") or {}).get("path")
    seen: dict[str, Path] = {}
    for path in sorted(run_dir.rglob(METRICS_NAME)):
        metrics = _read_json(path)
        key = column_key(metrics, path)
        if key in seen:
            raise FileFormatError(f"{run_dir}: two {key} results, {seen[key]} and {path}; keep one per run")
        seen[key] = path
        row.metrics[key] = probe_value(metrics, path)
        row.files.append(str(path))
    if student_dir is None and not seen:
        raise FileFormatError(f"{run_dir}: neither a student directory ({INFO_NAME}, config.json) nor any {METRICS_NAME}")
    return row


def published_rows(tasks: set[str], path: str | Path = PUBLISHED) -> list[Row]:
    """Published models with their figures for ``tasks`` (all of them report every SUPERB task)."""
    rows = []
    for entry in _read_json(Path(path))["rows"]:
        metrics = {t: float(entry[t]) for t in sorted(tasks) if entry.get(t) is not None}
        teacher = entry.get("teacher")
        if entry.get("data"):
            teacher = f"{teacher} ({entry['data']})"
        name = entry["model"] + (" (heads)" if entry.get("params_include_heads") else "")
        rows.append(Row(name=name, source=entry["source"], params_m=entry["params_m"], teacher=teacher, metrics=metrics))
    return rows


def _columns(rows: list[Row]) -> list[str]:
    keys = {k for row in rows for k in row.metrics}
    return sorted(keys, key=lambda k: (list(TASK_COLUMNS).index(k.split(":")[0]), k))


def _title(key: str) -> str:
    task, _, features = key.partition(":")
    return TASK_COLUMNS[task][0] + (f" ({features})" if features else "")


def _cell(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown_table(rows: list[Row], published: list[Row]) -> str:
    """Our rows, then the published ones restricted to the tasks of ours."""
    columns = _columns(rows)
    published = [Row(**{**p.__dict__, "metrics": {k: v for k, v in p.metrics.items() if k in columns}})
                 for p in published]
    header = ["model", "source", "params (M)", "heads (M)", "GMACs / s audio", "teacher", *map(_title, columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows + published:
        cells = [row.name, row.source, _cell(row.params_m), _cell(row.heads_m), _cell(row.gmacs_per_second),
                 row.teacher or "-", *(_cell(row.metrics.get(k)) for k in columns)]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def plot_report(rows: list[Row], published: list[Row], path: str | Path) -> Path:
    """One panel per task column: metric against parameters, ours filled, published hollow."""
    columns = _columns(rows)
    if not columns:
        raise FileFormatError("report: the run directories hold no probe results to plot")
    fig = Figure(figsize=(4.2 * len(columns), 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    for i, key in enumerate(columns):
        ax = fig.add_subplot(1, len(columns), i + 1)
        for group, style in ((published, dict(facecolors="none", edgecolors="grey")), (rows, dict(color="tab:blue"))):
            points = [(r.params_m, r.metrics[key], r.name) for r in group if key in r.metrics and r.params_m is not None]
            if points:
                ax.scatter([p[0] for p in points], [p[1] for p in points], s=30, **style)
                for x, y, label in points:
                    ax.annotate(label, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel("parameters (M)")
        ax.set_ylabel(_title(key) + (" (lower is better)" if key.split(":")[0] in LOWER_IS_BETTER else ""))
        ax.grid(alpha=0.3)
    fig.suptitle("ours: filled; published (SUPERB data): hollow", fontsize=9)
    path = Path(path)
    fig.savefig(path, dpi=120)
    return path


def build_report(run_dirs: list[str | Path], out_dir: str | Path, names: list[str] | None = None,
                 include_published: bool = True, macs_seconds: float = 10.0) -> dict[str, Any]:
    """Write ``report.md`` and ``report.png`` to ``out_dir``; returns the paths and the rows."""
    if names is not None and len(names) != len(run_dirs):
        raise ConfigError(f"report: {len(names)} names for {len(run_dirs)} run directories")
    rows = [collect_run(d, names[i] if names else None, macs_seconds) for i, d in enumerate(run_dirs)]
    tasks = {k.split(":")[0] for row in rows for k in row.metrics}
    published = published_rows(tasks) if include_published and tasks else []
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    note = ("Our figures are probe results on the run's own test manifest; published figures are SUPERB "
            "results (LibriSpeech test-clean for PR/ASR, Speech Commands, VoxCeleb1, ...), comparable only "
            "when the probe ran on the same data. Sources: published.json.\n")
    table = markdown_table(rows, published)
    (out / "report.md").write_text(f"# Model report\n\n{table}\n{note}")
    figure = plot_report(rows, published, out / "report.png") if tasks else None
    return {"markdown": out / "report.md", "figure": figure, "rows": rows, "published": published}
