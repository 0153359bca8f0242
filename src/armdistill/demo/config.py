"""Demo settings: the corpus, the distillation recipe, the probe protocol and the pass margin.

A demo file (``configs/demo.yaml``, ``configs/demo-quick.yaml``) is YAML with the sections
below; ``distill`` is a full distillation recipe (see docs/config.md) whose ``teacher.path``,
``data.train``, ``data.valid`` and ``output_dir`` the demo fills in. Overrides are dotted
``key=value`` strings, as for ``armdistill distill`` (``distill.trainer.max_steps=50``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from armdistill.checks import check_range
from armdistill.config import ConfigError, apply_overrides, from_dict, load_yaml
from armdistill.distill.config import DistillConfig
from armdistill.eval.probe import ProbeConfig

# Where the repository's demo files live when the package is installed in place (make install).
CONFIG_DIR = Path(__file__).resolve().parents[3] / "configs"


@dataclass
class CorpusSection:
    """The synthetic corpus (``armdistill synth``); ``dir`` null: ``<cache>/synth/speech-<minutes>min-seed<seed>``."""

    minutes: float = 30.0
    seed: int = 0
    workers: int = 2
    dir: str | None = None

    def __post_init__(self) -> None:
        check_range("minutes", self.minutes, gt=0)
        check_range("workers", self.workers, ge=1)


@dataclass
class ProbeSection:
    """Phone-recognition probe protocol, the same for every upstream.

    ``train_minutes``: the probe trains on the first utterances of the train split up to this
    much audio (null: all of it); ``settings``: ProbeConfig keys (eval/probe.py).
    """

    train_minutes: float | None = None
    settings: ProbeConfig = field(default_factory=ProbeConfig)

    def __post_init__(self) -> None:
        check_range("train_minutes", self.train_minutes, gt=0, null=True)


@dataclass
class AblationSection:
    """``armdistill demo --ablation`` (demo/ablation.py): every variant at each schedule of ``steps``
    (N and 2N distillation steps: whether the reference still moves), ``jobs`` runs at once in
    separate processes of ``threads`` torch threads each; ``variants``: keys to run (null: all; the
    variants they are compared against are always run too)."""

    steps: list[int] = field(default_factory=lambda: [100, 200])
    jobs: int = 1
    variants: list[str] | None = None

    def __post_init__(self) -> None:
        if not self.steps or any(s < 1 for s in self.steps) or len(set(self.steps)) != len(self.steps):
            raise ConfigError(f"steps: expected distinct step counts >= 1, got {self.steps}")
        check_range("jobs", self.jobs, ge=1)


@dataclass
class DemoConfig:
    """A whole demo run.

    ``teacher``: a teacher source ("" = the shipped ``armdistill.DEFAULT_TEACHER``);
    ``teacher_margin``: the largest PER gap (absolute) between distilled student and teacher
    that the report counts as "close to the teacher"; ``attention_utterance``: index into the
    test split of the utterance whose attention maps are drawn; ``cache_dir``: corpus and
    feature cache (null: ``$ARMDISTILL_CACHE`` or ``~/.cache/armdistill``); ``threads``: torch
    threads for the whole run (null: torch's default). One thread is the default because on a
    shared 2-core machine two threads measured 6-40x slower (threads spin waiting for a core
    another process holds); on an idle machine two are faster.
    """

    name: str = "demo"
    threads: int | None = 1
    teacher: str = ""
    teacher_margin: float = 0.1
    attention_utterance: int = 0
    cache_dir: str | None = None
    corpus: CorpusSection = field(default_factory=CorpusSection)
    probe: ProbeSection = field(default_factory=ProbeSection)
    distill: DistillConfig = field(default_factory=DistillConfig)
    ablation: AblationSection = field(default_factory=AblationSection)

    def __post_init__(self) -> None:
        check_range("teacher_margin", self.teacher_margin, ge=0)
        check_range("threads", self.threads, ge=1, null=True)
        check_range("attention_utterance", self.attention_utterance, ge=0)


DEMO_FILES = {"default": "demo.yaml", "quick": "demo-quick.yaml", "ablation": "demo-ablation.yaml"}


def default_config_path(mode: str = "default") -> Path:
    """The repository's demo file for ``mode`` (default, quick, ablation)."""
    return CONFIG_DIR / DEMO_FILES[mode]


def load_demo_config(path: str | Path, overrides: list[str] | None = None) -> DemoConfig:
    """Read a demo file and apply dotted overrides; unknown keys are errors naming file and key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: demo config not found (run from a source checkout, or pass --config FILE)")
    data = apply_overrides(load_yaml(path), list(overrides or []))
    try:
        return from_dict(DemoConfig, data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
