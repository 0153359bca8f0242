"""The SUPERB benchmark proper: s3prl's downstream runner on one of our upstreams.

``run_superb`` imports s3prl, registers the upstream in ``s3prl.hub`` under a name, and runs
s3prl's ``run_downstream.py`` in this process (so the registration is visible to it) with
``-u NAME -k UPSTREAM -d DOWNSTREAM -c CONFIG`` added to the caller's runner arguments. The runner
reads its configs relative to s3prl's own folder, so it runs there; path arguments given
relative to the caller's folder are made absolute first. Its checkpoints hold an
``argparse.Namespace``, which torch's default ``weights_only`` load refuses: the runner runs with
that one class allow-listed, and every other load keeps the default restriction.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import runpy
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from armdistill.checks import check_choice
from armdistill.config import ConfigError
from armdistill.errors import MissingFileError, UserError
from armdistill.eval.s3prl_upstream import load_s3prl_upstream, register_upstream, upstream_factory
from armdistill.eval.upstream import StudentFeatures

RECORD_NAME = "armdistill_upstream.json"
VENV_DOC = "docs/s3prl-venv.md"


@dataclass(frozen=True)
class SuperbTask:
    downstream: str
    config: str
    metric: str


# s3prl's SUPERB recipes (s3prl/downstream/docs/superb.md): downstream expert and config file.
SUPERB_TASKS: dict[str, SuperbTask] = {
    "pr": SuperbTask("ctc", "downstream/ctc/libriphone.yaml", "PER"),
    "asr": SuperbTask("asr", "downstream/asr/config.yaml", "WER"),
    "ks": SuperbTask("speech_commands", "downstream/speech_commands/config.yaml", "accuracy"),
    "ic": SuperbTask("fluent_commands", "downstream/fluent_commands/config.yaml", "accuracy"),
    "sid": SuperbTask("voxceleb1", "downstream/voxceleb1/config.yaml", "accuracy"),
    "er": SuperbTask("emotion", "downstream/emotion/config.yaml", "accuracy"),
    "sf": SuperbTask("ctc", "downstream/ctc/snips.yaml", "slot F1 / CER"),
}

# Runner options we set ourselves, and those holding paths (made absolute before the runner
# changes folder).
_OURS = {"-u": "--upstream", "-k": "--upstream_ckpt", "-d": "--downstream"}
_PATHS = {"-p": "--expdir", "-e": "--past_exp", "-i": "--init_ckpt", "-c": "--config", "-g": "--upstream_model_config"}
_FROZEN = {"-f", "--upstream_trainable"}
# What s3prl's runner checkpoints (states-*.ckpt, *-best.ckpt) pickle besides tensors and plain
# containers: the runner's arguments ("Args"). Allow-listed only while the runner runs.
RUNNER_CHECKPOINT_GLOBALS: tuple[type, ...] = (argparse.Namespace,)


def _option(arg: str, table: dict[str, str]) -> str | None:
    """The short name of runner option ``arg`` (``-p``, ``--expdir`` or ``--expdir=X``) if in ``table``."""
    name = arg.split("=", 1)[0]
    for short, long in table.items():
        if name in (short, long):
            return short
    return None


def _absolutise(runner_args: Sequence[str], cwd: Path) -> list[str]:
    out, args, i = [], list(runner_args), 0
    while i < len(args):
        arg = args[i]
        short = _option(arg, _PATHS)
        if short is not None and "=" in arg:
            name, value = arg.split("=", 1)
            out.append(f"{name}={(cwd / value).resolve()}")
        elif short is not None and i + 1 < len(args):
            out += [arg, str((cwd / args[i + 1]).resolve())]
            i += 1
        else:
            out.append(arg)
        i += 1
    return out


def runner_argv(task: str, name: str, upstream: str | Path, runner_args: Sequence[str], cwd: Path) -> list[str]:
    """The runner's ``sys.argv``: ``run_downstream.py`` + ours (``-u -k -d``, ``-c`` unless the caller
    gives one) + the caller's arguments with their paths made absolute."""
    check_choice("task", task, SUPERB_TASKS)
    for arg in runner_args:
        if _option(arg, _OURS):
            raise ConfigError(f"runner argument {arg}: set by armdistill superb (--task, --upstream, --name)")
        if arg in _FROZEN:
            raise ConfigError(f"runner argument {arg}: the SUPERB protocol keeps the upstream frozen")
    spec = SUPERB_TASKS[task]
    ours = ["-u", name, "-k", str(upstream), "-d", spec.downstream]
    if not any(_option(a, {"-c": "--config"}) for a in runner_args):
        ours += ["-c", spec.config]
    return ["run_downstream.py", *ours, *_absolutise(runner_args, cwd)]


def experiment_dir(argv: Sequence[str], root: Path) -> Path | None:
    """Where the runner will write (``-p DIR``, or ``-n NAME`` under ``root/result/downstream``)."""
    for i, arg in enumerate(argv[:-1]):
        if arg in ("-p", "--expdir"):
            return Path(argv[i + 1])
        if arg in ("-n", "--expname"):
            return root / "result" / "downstream" / argv[i + 1]
    return None


def import_s3prl_hub() -> Any:
    """``s3prl.hub``, or an error that says which environment runs it."""
    try:
        return importlib.import_module("s3prl.hub")
    except ImportError as err:
        raise UserError(f"s3prl is not importable here ({err}); it runs in its own environment, see {VENV_DOC}") from None
    except AttributeError as err:
        raise UserError(f"s3prl failed to import ({err}): its torchaudio is too new, see {VENV_DOC}") from None


def s3prl_root(hub: Any, root: str | Path | None) -> Path:
    """The folder holding ``run_downstream.py`` and ``downstream/``: that of the imported s3prl
    package. ``root``, when given, must be that folder: the runner imports its downstream code
    from the installed package, so configs from another tree would run against other code."""
    package = Path(hub.__file__).resolve().parent
    path = Path(root).resolve() if root is not None else package
    if not (path / "run_downstream.py").is_file():
        raise MissingFileError(f"{path}: no run_downstream.py; give --s3prl-root the s3prl/ folder of an s3prl source tree")
    if path != package:
        raise UserError(f"--s3prl-root {path} is not the s3prl package this environment imports ({package}); "
                        f"install that source tree into the environment (see {VENV_DOC})")
    return path


@contextlib.contextmanager
def _runner_process_state(argv: list[str], cwd: Path) -> Iterator[None]:
    """``sys.argv``, the working folder and the checkpoint allow-list as the runner expects them,
    restored afterwards."""
    saved_argv, saved_cwd = sys.argv, Path.cwd()
    sys.argv = argv
    os.chdir(cwd)
    try:
        with torch.serialization.safe_globals(list(RUNNER_CHECKPOINT_GLOBALS)):
            yield
    finally:
        sys.argv = saved_argv
        os.chdir(saved_cwd)


def run_superb(task: str, upstream: str | Path, runner_args: Sequence[str], features: StudentFeatures = "hidden",
               name: str = "armdistill", root: str | Path | None = None, dry_run: bool = False) -> list[str]:
    """Register ``upstream`` in s3prl's hub and run s3prl's downstream runner; returns its argv.

    The model is loaded once before the runner starts (bad paths fail fast) and its record
    (features, fingerprint, layers) is written as ``armdistill_upstream.json`` in the
    experiment folder. ``dry_run`` stops after registration and returns the argv.
    """
    upstream = str(Path(upstream).resolve()) if Path(upstream).exists() else str(upstream)
    argv = runner_argv(task, name, upstream, runner_args, Path.cwd())
    hub = import_s3prl_hub()
    path = s3prl_root(hub, root)
    config = argv[argv.index("-c") + 1] if "-c" in argv else None
    if config is not None and not (path / config).is_file():
        raise MissingFileError(f"{path / config}: s3prl's downstream config is missing (the PyPI package "
                                f"ships none): install s3prl from its source tree (see {VENV_DOC}), or give -c FILE")
    model = load_s3prl_upstream(upstream, features)
    register_upstream(hub, name, upstream_factory(upstream, features, prebuilt=model))
    expdir = experiment_dir(argv, path)
    if expdir is not None:
        expdir.mkdir(parents=True, exist_ok=True)
        record = {"task": task, "downstream": SUPERB_TASKS[task].downstream, "argv": argv, **model.record()}
        (expdir / RECORD_NAME).write_text(json.dumps(record, indent=2) + "\n")
    if not dry_run:
        with _runner_process_state(argv, path):
            runpy.run_path(str(path / "run_downstream.py"), run_name="__main__")
    return argv
