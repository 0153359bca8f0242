"""Kills at any moment, torn checkpoints, resume selection and config checks, no silent overwrite,
atomic student directories."""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
import torch

from _distill_helpers import REFERENCE, REPO, STEPS, TINY_RECIPE, cli, logged, overrides
from armdistill.config import ConfigError, to_dict
from armdistill.distill.checkpoints import PAUSE_ENV, RUN_ENTRIES, prepare_run_dir, resume_changes, resume_point
from armdistill.distill.config import load_config
from armdistill.distill.export import write_student
from armdistill.distill.train import run_distillation
from armdistill.errors import FileFormatError
from armdistill.io.atomic import atomic_directory, remove_orphans
from armdistill.models.student import Student

KILL_SEED = 10


def wait_for(found: Callable[[], list[Path]], proc: subprocess.Popen, timeout: float = 240.0) -> list[Path]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            hits = found()
        except FileNotFoundError:  # an entry vanished between listing and stat
            hits = []
        if hits:
            return hits
        time.sleep(0.01)
    proc.kill()
    raise AssertionError(f"nothing happened before the process ended: {proc.communicate()[1].decode()[-3000:]}")


def stalled(paths: Iterable[Path], seconds: float = 0.5) -> list[Path]:
    """The non-empty files among ``paths`` that do not grow for ``seconds`` (a write held by the hook)."""
    sizes = {p: p.stat().st_size for p in paths}
    time.sleep(seconds)
    return [p for p, size in sizes.items() if size > 0 and p.exists() and p.stat().st_size == size]


def kill(proc: subprocess.Popen) -> str:
    os.kill(proc.pid, signal.SIGKILL)
    return proc.communicate()[1].decode()


def step_of(path: Path) -> int | None:
    """The step a checkpoint file (or the temporary file of one) holds."""
    named = re.fullmatch(r"\.?step(\d+)\.ckpt(\.tmp-.*)?", path.name)
    if named:
        return int(named.group(1))
    if path.name.endswith(".ckpt"):
        return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])
    return None  # a temporary last.ckpt / best.ckpt: its step is not in its name


def other_filesystem_tmp(tmp_path: Path) -> Path:
    """A TMPDIR on another filesystem than the run (/dev/shm where it is one), else beside it."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shm.stat().st_dev != tmp_path.stat().st_dev:
        return Path(tempfile.mkdtemp(dir=shm))
    return Path(tempfile.mkdtemp(dir=tmp_path))


def test_kills_inside_a_checkpoint_write_and_right_after_a_resume_continue_exactly(
    distill_work: dict[str, Path], distill_reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    rng = random.Random(KILL_SEED)
    out = tmp_path / "killed"
    ckpts = out / "checkpoints"
    args = overrides(distill_work, out, *REFERENCE)
    tmp_dirs = [other_filesystem_tmp(tmp_path), tmp_path / "tmp2"]
    tmp_dirs[1].mkdir()
    try:
        # 1. killed inside a seeded random checkpoint write, which the hook holds half-written
        write = rng.randint(3, 20)
        env = {**os.environ, PAUSE_ENV: str(write), "TMPDIR": str(tmp_dirs[0])}
        proc = subprocess.Popen(cli(*args), cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # (a write stalled by load before any checkpoint is complete is not the held one)
        torn = wait_for(lambda: stalled(ckpts.glob(".*.tmp-*")) if any(ckpts.glob("step*.ckpt")) else [], proc)
        kill(proc)
        assert torn[0].exists() and not any(ckpts.glob("*-v*.ckpt")), write
        assert not (out / "student").exists()
        # the temporary file lived beside the checkpoint: nothing is left in TMPDIR
        assert not list(tmp_dirs[0].iterdir())

        # 2. resumed, and killed as soon as it writes anything
        before = {p.name: p.stat().st_mtime_ns for p in ckpts.iterdir()}
        env = {**os.environ, "TMPDIR": str(tmp_dirs[1])}
        proc = subprocess.Popen(cli(*args, "--resume"), cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        changed = wait_for(lambda: [p for p in ckpts.iterdir() if before.get(p.name) != p.stat().st_mtime_ns], proc)
        err = kill(proc)
        resumed = int(re.search(r"resuming from \S+ \(step (\d+)\)", err).group(1))
        assert f"removed {torn[0]}, left by an interrupted write" in err
        # nothing is saved mid-accumulation: what follows a resume is the next optimiser step's checkpoint
        for path in changed:
            if path.exists() and step_of(path) is not None:
                assert step_of(path) > resumed and "-v" not in path.name, (path, resumed)
        assert not list(tmp_dirs[1].iterdir())
    finally:
        shutil.rmtree(tmp_dirs[0], ignore_errors=True)

    # 3. a 0-byte last.ckpt (the torn copy Lightning's $TMPDIR move leaves) is passed over
    (ckpts / "last.ckpt").write_bytes(b"")
    capsys.readouterr()
    run_distillation(load_config(TINY_RECIPE, args), resume="last")
    err = capsys.readouterr().err
    assert f"passed over {ckpts / 'last.ckpt'}: 0 bytes (a torn write)" in err
    start = int(re.search(r"resuming from \S+ \(step (\d+)\)", err).group(1))
    assert start >= resumed >= 1
    expected, losses = logged(distill_reference, "train/loss"), logged(out, "train/loss")
    assert set(range(start, STEPS)) <= set(losses)
    for step in range(start, STEPS):
        assert losses[step] == pytest.approx(expected[step], abs=1e-6), step
    final, reference = Student.from_pretrained(out / "student"), Student.from_pretrained(distill_reference / "student")
    for key, value in final.state_dict().items():
        torch.testing.assert_close(value, reference.state_dict()[key], rtol=0, atol=1e-6)


def fake_checkpoint(path: Path, step: int, mtime: int) -> Path:
    torch.save({"global_step": step, "armdistill": {"config": {"trainer": {"max_steps": 9}}}}, path)
    os.utime(path, ns=(mtime, mtime))
    return path


def test_resume_takes_the_newest_checkpoint_that_loads(tmp_path: Path) -> None:
    ckpts = tmp_path / "checkpoints"
    ckpts.mkdir()
    fake_checkpoint(ckpts / "step00000003.ckpt", 3, 10**18)
    fake_checkpoint(ckpts / "step00000004.ckpt", 4, 2 * 10**18)
    (ckpts / "step00000005.ckpt").write_bytes(b"PK\x03\x04 torn")
    last = ckpts / "last.ckpt"
    last.write_bytes(b"")
    for path, mtime in ((ckpts / "step00000005.ckpt", 3 * 10**18), (last, 4 * 10**18)):
        os.utime(path, ns=(mtime, mtime))
    point = resume_point(tmp_path, "last")
    assert (point.path.name, point.step) == ("step00000004.ckpt", 4)
    assert [(p.name, why.split(" (")[0]) for p, why in point.passed_over] == [
        ("last.ckpt", "0 bytes"), ("step00000005.ckpt", "does not load")]
    with pytest.raises(FileFormatError, match=r"--resume .*last\.ckpt: 0 bytes"):
        resume_point(tmp_path, str(last))
    with pytest.raises(ConfigError, match=r"no loadable checkpoint in .*checkpoints \(none found\)"):
        resume_point(tmp_path / "elsewhere", "last")


def test_resume_refuses_changed_settings_but_max_steps(distill_work: dict[str, Path], distill_reference: Path) -> None:
    saved = torch.load(distill_reference / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    config = saved["armdistill"]["config"]
    current = to_dict(load_config(TINY_RECIPE, overrides(distill_work, distill_reference, *REFERENCE, "trainer.max_steps=20")))
    assert resume_changes(config, current, STEPS) == {"trainer.max_steps": (STEPS, 20)}
    moved = to_dict(load_config(TINY_RECIPE, overrides(distill_work, distill_reference.parent / "moved", *REFERENCE)))
    assert resume_changes(config, moved, STEPS) == {}
    before = sorted((p.relative_to(distill_reference), p.stat().st_mtime_ns) for p in distill_reference.rglob("*"))
    changed = overrides(distill_work, distill_reference, *REFERENCE, "optim.lr=1e-3", "mask.mask_prob=0.5")
    with pytest.raises(ConfigError, match=r"differs from the checkpoint's in mask\.mask_prob \(0\.8 -> 0\.5\), "
                                          r"optim\.lr \(0\.005 -> 0\.001\); only trainer\.max_steps may change"):
        run_distillation(load_config(TINY_RECIPE, changed), resume="last")
    with pytest.raises(ConfigError, match=r"trainer\.max_steps: 5 is below the step the checkpoint reached \(12\)"):
        resume_changes(config, {**current, "trainer": {**current["trainer"], "max_steps": 5}}, STEPS)
    assert sorted((p.relative_to(distill_reference), p.stat().st_mtime_ns) for p in distill_reference.rglob("*")) == before


def test_distill_into_a_used_directory_is_refused(distill_work: dict[str, Path], distill_reference: Path) -> None:
    before = sorted((p.relative_to(distill_reference), p.stat().st_mtime_ns) for p in distill_reference.rglob("*"))
    with pytest.raises(ConfigError, match=r"output_dir: .*reference is not empty \(checkpoints, config\.yaml, logs, "
                                          r"student, student-best\); pass --resume .* or --overwrite"):
        run_distillation(load_config(TINY_RECIPE, overrides(distill_work, distill_reference, *REFERENCE)))
    assert sorted((p.relative_to(distill_reference), p.stat().st_mtime_ns) for p in distill_reference.rglob("*")) == before


def test_overwrite_removes_the_previous_run_only(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for name in RUN_ENTRIES:
        (tmp_path / name).mkdir() if "." not in name else (tmp_path / name).write_text("old")
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "checkpoints" / ".last.ckpt.tmp-abc").write_bytes(b"half")
    prepare_run_dir(tmp_path, resuming=True, overwrite=False)
    assert "removed" in capsys.readouterr().err and not (tmp_path / "checkpoints" / ".last.ckpt.tmp-abc").exists()
    prepare_run_dir(tmp_path, resuming=False, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_student_directory_is_replaced_whole_or_not_at_all(tmp_path: Path) -> None:
    torch.manual_seed(0)
    first, second = Student.from_preset("tiny-arm"), Student.from_preset("tiny-arm")
    target = tmp_path / "student"
    write_student(first, target, {"global_step": 1})

    class Killed(Exception):
        pass

    with pytest.raises(Killed), atomic_directory(target) as tmp:
        second.save_pretrained(tmp)
        raise Killed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student"]
    kept = Student.from_pretrained(target).state_dict()
    assert all(torch.equal(kept[k], v) for k, v in first.state_dict().items())
    # a kill between the two renames leaves the old copy aside; the next start puts it back
    target.rename(tmp_path / ".student.old-x1")
    (tmp_path / ".student.tmp-y2").mkdir()
    assert remove_orphans(tmp_path) == [tmp_path / ".student.tmp-y2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student"]
    write_student(second, target, {"global_step": 2})
    assert (target / "distill.json").read_text().strip() == '{\n  "global_step": 2\n}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student"]
