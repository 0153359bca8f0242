"""``data.on_bad_audio`` in training (one line from worker processes; skipped files recorded, dropped
again unread after a resume, batches unchanged) and the probes' checks of their input audio."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from _distill_helpers import RUN, TINY_RECIPE, logged, overrides, write_audio
from armdistill.cli import main
from armdistill.data import dataset as dataset_module
from armdistill.data.audio import AudioFileError
from armdistill.data.bad_audio import SKIPPED_NAME, BadItem, SkipLog
from armdistill.data.dataset import AudioDataset
from armdistill.data.manifest import read_manifest, write_manifest
from armdistill.distill.config import load_config, plan, resolve_proj_dim
from armdistill.distill.module import DistillModule, lr_factor
from armdistill.distill.train import run_distillation
from armdistill.eval.cache import load_or_extract
from armdistill.eval.probe import ProbeConfig, run_probe
from armdistill.eval.upstream import BaselineUpstream
from armdistill.models.student import Student
from armdistill.teachers import Teacher

# 18 usable clips, 2 a micro-batch, 2 micro-batches a step: epoch 0 is steps 0-4 (its last step one micro-batch)
SKIP_RUN = [*RUN, "data.on_bad_audio=skip", "data.valid=null", "trainer.checkpoint_every_steps=1",
            "trainer.keep_checkpoints=-1", "optim.warmup_steps=1"]


def add_bad_files(manifest: Path, sub_frame: bool) -> tuple[Path, dict[str, str]]:
    """The manifest's clips plus a file with non-finite samples, a truncated FLAC and (``sub_frame``)
    a 100-sample file, spread through the list; returns the new manifest and file -> problem."""
    m = read_manifest(manifest)
    root = m.root
    wav = 0.1 * np.random.default_rng(0).standard_normal(20000).astype(np.float32)
    sf.write(root / "cut.flac", wav[1000:], 16000)  # noise: its audio, not its header, is cut off below
    wav[500] = np.nan
    sf.write(root / "nan.wav", wav, 16000, subtype="FLOAT")
    data = (root / "cut.flac").read_bytes()
    (root / "cut.flac").write_bytes(data[: len(data) // 2])
    rows = list(zip(m.paths, m.num_samples))
    rows[3:3] = [("nan.wav", 20000)]
    rows[9:9] = [("cut.flac", 19000)]
    problems = {"nan.wav": "1 non-finite samples", "cut.flac": "cannot decode audio"}
    if sub_frame:
        sf.write(root / "tiny.wav", wav[1000:1100], 16000)
        rows[12:12] = [("tiny.wav", 100)]
        problems["tiny.wav"] = "the manifest lists 100 samples, shorter than one frame (400 samples)"
    out = manifest.with_name(f"bad-{'all' if sub_frame else 'read'}.tsv")
    write_manifest(out, root, rows)
    return out, problems


@pytest.fixture(scope="module")
def bad_work(tmp_path_factory: pytest.TempPathFactory, distill_work: dict[str, Path]) -> dict[str, Path]:
    train = write_audio(tmp_path_factory.mktemp("bad"), "train", [1.0, 1.2, 1.4, 1.6, 1.0, 1.5, 2.0, 1.8] * 2, seed=1)
    return {**distill_work, "train": train}


def test_error_policy_stops_with_one_line_from_a_worker(bad_work: dict[str, Path], tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    manifest, problems = add_bad_files(bad_work["train"], sub_frame=False)
    args = overrides({**bad_work, "train": manifest}, tmp_path / "run", *RUN, "data.valid=null", "data.num_workers=1")
    assert main(["distill", "--config", str(TINY_RECIPE), *args]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "DataLoader worker" not in err
    line = err.strip().splitlines()[-1]
    lines = {path: i + 2 for i, path in enumerate(read_manifest(manifest).paths)}
    assert any(line.startswith(f"armdistill distill: error: {manifest}:{lines[name]}: {manifest.parent / 'train' / name}: "
                               f"{problem}") for name, problem in problems.items()), line
    # a file shorter than one frame is refused before training, naming its line
    manifest, _ = add_bad_files(bad_work["train"], sub_frame=True)
    with pytest.raises(AudioFileError, match=rf"bad-all\.tsv:14: .*tiny\.wav: the manifest lists 100 samples"):
        AudioDataset(manifest, min_samples=400)
    assert [item.line for item in AudioDataset(manifest, min_samples=400, on_bad_audio="skip").rejected] == [14]


def test_skip_policy_records_files_and_a_resume_drops_them_again_unread(
    bad_work: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    manifest, problems = add_bad_files(bad_work["train"], sub_frame=True)
    work = {**bad_work, "train": manifest}
    full = tmp_path / "full"
    run_distillation(load_config(TINY_RECIPE, overrides(work, full, *SKIP_RUN, "trainer.max_steps=7")))
    rows = [line.split("\t") for line in (full / SKIPPED_NAME).read_text().splitlines()[1:]]
    assert sorted((Path(r[2]).name, r[3].split(" (")[0].split(";")[0]) for r in rows) == sorted(
        (name, problem.split(" (")[0]) for name, problem in problems.items())
    assert all(r[0] == str(manifest.resolve()) for r in rows)
    assert max(logged(full, "data/skipped_files").values()) == 3
    assert json.loads((full / "student" / "distill.json").read_text())["skipped_files"] == 3
    assert "armdistill distill: skipped " in capsys.readouterr().err

    # the run moved elsewhere and resumed from step 5 (in epoch 1): the bad files are not read again,
    # and the batches, so the losses and weights, are the uninterrupted run's
    moved = tmp_path / "moved"
    shutil.copytree(full, moved)
    shutil.rmtree(moved / "student")
    read: list[str] = []

    def counting(path: str | Path, *args: object, **kwargs: object) -> np.ndarray:
        read.append(Path(path).name)
        return load_audio(path, *args, **kwargs)

    load_audio = dataset_module.load_audio
    monkeypatch.setattr(dataset_module, "load_audio", counting)
    cfg = load_config(TINY_RECIPE, overrides(work, moved, *SKIP_RUN, "trainer.max_steps=7"))
    run_distillation(cfg, resume=str(moved / "checkpoints" / "step00000005.ckpt"))
    assert read and not set(read) & set(problems)
    assert (moved / SKIPPED_NAME).read_text() == (full / SKIPPED_NAME).read_text()
    expected, resumed = logged(full, "train/loss"), logged(moved, "train/loss")
    for step in (5, 6):
        assert resumed[step] == pytest.approx(expected[step], abs=1e-6), step
    a, b = Student.from_pretrained(full / "student"), Student.from_pretrained(moved / "student")
    for key, value in a.state_dict().items():
        torch.testing.assert_close(b.state_dict()[key], value, rtol=0, atol=1e-6)


def test_raising_max_steps_extends_a_finished_run_on_the_recomputed_schedule(
    bad_work: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    args = overrides(bad_work, out, *SKIP_RUN, "data.on_bad_audio=error")
    run_distillation(load_config(TINY_RECIPE, [*args, "trainer.max_steps=4"]))
    saved = {p.name: p.stat().st_mtime_ns for p in (out / "checkpoints").iterdir()}
    capsys.readouterr()
    run_distillation(load_config(TINY_RECIPE, [*args, "trainer.max_steps=6"]), resume="last")
    err = capsys.readouterr().err
    assert "trainer.max_steps: 4 -> 6; learning-rate schedule recomputed (warm-up 1 steps, linear decay to step 6)" in err
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert names == ["last.ckpt", *(f"step0000000{i}.ckpt" for i in range(1, 7))]
    # the finished run's checkpoints are not saved again (no mid-accumulation copy of step 4)
    assert all((out / "checkpoints" / name).stat().st_mtime_ns == mtime for name, mtime in saved.items()
               if name != "last.ckpt")
    # steps 4 and 5 run at the new schedule's rates; the old one had reached 0 at step 4
    lr = logged(out, "lr-AdamW/pg1")
    for step in (4, 5):
        assert lr[step] == pytest.approx(5e-3 * lr_factor(step, 1, 6, "linear", 0.0), rel=1e-6), (step, lr)
    assert lr[4] > 0


def probe_corpus(root: Path) -> dict[str, Path]:
    """Three tiny PR splits of 1 s tones; the train split lists a stale size, a sub-frame file and a cut FLAC."""
    root.mkdir()
    manifests = {}
    for split, count in (("train", 6), ("valid", 3), ("test", 3)):
        rows = []
        for i in range(count):
            sf.write(root / f"{split}{i}.wav", np.sin(np.arange(16000) * (0.05 + 0.01 * i)).astype(np.float32), 16000)
            rows.append((f"{split}{i}.wav", 16000))
        if split == "train":
            rows[1] = (rows[1][0], 15000)
            sf.write(root / "short.wav", np.zeros(100, np.float32), 16000)
            sf.write(root / "cut.flac", np.random.default_rng(0).uniform(-0.5, 0.5, 16000).astype(np.float32), 16000)
            data = (root / "cut.flac").read_bytes()
            (root / "cut.flac").write_bytes(data[: len(data) // 2])
            rows += [("short.wav", 100), ("cut.flac", 16000)]
        manifests[split] = root / f"{split}.tsv"
        write_manifest(manifests[split], root, rows)
        manifests[split].with_suffix(".phn").write_text("".join(f"AA B{i % 2}\n" for i in range(len(rows))))
    return manifests


def test_probe_checks_its_audio_and_skips_on_request(tmp_path: Path) -> None:
    m = probe_corpus(tmp_path / "c")
    up, cache = BaselineUpstream("mfcc"), tmp_path / "cache"
    with pytest.raises(AudioFileError, match=r"train\.tsv:3: .*train1\.wav: the header gives 16000 samples at "
                                             r"16000 Hz where the manifest lists 15000"):
        load_or_extract(up, m["train"], cache)
    feats, hit = load_or_extract(up, m["train"], cache, on_bad_audio="skip")
    assert not hit and len(feats) == 5 and sorted(feats.skipped) == [1, 6, 7]
    assert "shorter than one frame (400 samples)" in feats.skipped[6] and "cannot decode" in feats.skipped[7]
    # the cached entry remembers what it left out; the error policy still refuses it
    with pytest.raises(AudioFileError, match=r"train\.tsv:3: "):
        load_or_extract(up, m["train"], cache)
    cfg = ProbeConfig(cache_dir=str(cache), epochs=1, min_epochs=1, on_bad_audio="skip")
    result = run_probe("pr", up, m["train"], m["valid"], m["test"], cfg=cfg)
    assert result["skipped_files"] == {"train": 3, "valid": 0, "test": 0}
    assert result["num_utterances"] == {"train": 5, "valid": 3, "test": 3}


def test_skip_log_survives_a_torn_last_line(tmp_path: Path) -> None:
    log = SkipLog(tmp_path / SKIPPED_NAME)
    items = [BadItem("/m.tsv", 3, "/a.wav", "cannot\tdecode\naudio"), BadItem("/m.tsv", 5, "/b.wav", "stale")]
    assert log.add(items + items[:1]) == [items[0]._replace(problem="cannot decode audio"), items[1]]
    with (tmp_path / SKIPPED_NAME).open("a") as f:
        f.write("/m.tsv\t9\t/c.w")  # a kill mid-append
    again = SkipLog(tmp_path / SKIPPED_NAME)
    assert again.known("/m.tsv") == {3: "cannot decode audio", 5: "stale"}
    again.add([BadItem("/m.tsv", 9, "/c.wav", "x")])
    assert len(SkipLog(tmp_path / SKIPPED_NAME)) == 3 and os.path.getsize(tmp_path / SKIPPED_NAME) > 0


def test_a_micro_batch_of_skipped_files_only_adds_nothing(distill_work: dict[str, Path], tmp_path: Path) -> None:
    cfg = load_config(TINY_RECIPE, overrides(distill_work, tmp_path, *RUN))
    module = DistillModule(Student(resolve_proj_dim(cfg, 32).student_model), Teacher.from_pretrained(distill_work["teacher"]), cfg, plan(cfg), "fp")
    loss = module.training_step({"wav": torch.zeros(0, 0), "lengths": torch.zeros(0, dtype=torch.long)}, 0)
    loss.backward()
    grads = [p.grad for p in module.student.parameters() if p.requires_grad]
    assert loss.item() == 0.0 and grads and all(g is not None and not g.any() for g in grads)
    assert module.validation_step({"wav": torch.zeros(0, 0), "lengths": torch.zeros(0, dtype=torch.long)}, 0) is None
