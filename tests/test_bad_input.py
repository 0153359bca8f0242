"""One error policy: every fault of the user's input ends in one ``armdistill CMD: error:`` line
naming the file or key (exit code 2); anything else is a bug and keeps its traceback."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from _distill_helpers import TINY_RECIPE, overrides
from armdistill.cli import error_line, main
from armdistill.data.manifest import read_manifest
from armdistill.distill.config import load_config
from armdistill.errors import DataError, UserError
from armdistill.models.student import Student


def _error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The one error line of a command that must fail with exit code 2."""
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert sum("error:" in line for line in lines) == 1, lines
    assert lines[-1].startswith(f"armdistill {argv[0]}: error: "), lines
    return lines[-1]


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("student") / "tiny"
    Student.from_preset("tiny-arm").save_pretrained(directory)
    return directory


def _student_copy(student_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(student_dir, tmp_path / "student"))


def test_corrupt_model_safetensors(student_dir, distill_work, tmp_path, capsys) -> None:
    broken = _student_copy(student_dir, tmp_path)
    (broken / "model.safetensors").write_bytes(b"\x40\x00\x00\x00\x00\x00\x00\x00{not json")
    error = _error(["info", str(broken)], capsys)
    assert f"{broken}: its weights are not readable safetensors" in error, error
    teacher = Path(shutil.copytree(distill_work["teacher"], tmp_path / "teacher"))
    (teacher / "model.safetensors").write_bytes(b"\x10\x00\x00\x00")
    error = _error(["convert-teacher", str(teacher), str(tmp_path / "out")], capsys)
    assert f"{teacher}: the weights do not load into HubertModel" in error, error


def test_student_config_with_wrong_shapes_or_a_json_list(student_dir, tmp_path, capsys) -> None:
    broken = _student_copy(student_dir, tmp_path)
    config = json.loads((broken / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps({**config, "ffn_dim": config["ffn_dim"] * 2}))
    error = _error(["info", str(broken)], capsys)
    assert f"{broken / 'model.safetensors'}: the weights do not match {broken / 'config.json'}" in error, error
    assert "feed_forward.intermediate_dense.weight" in error, error
    (broken / "config.json").write_text("[1, 2]")
    error = _error(["info", str(broken)], capsys)
    assert f"{broken / 'config.json'}: expected a JSON object of student settings, got list" in error, error
    (broken / "config.json").write_text(json.dumps({**config, "dim": "wide"}))
    assert f"{broken / 'config.json'}: dim: expected an integer, got 'wide'" in _error(["info", str(broken)], capsys)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"a: &a [*a]\n", "a YAML alias makes a value contain itself (recursive alias)"),
        (b"optim: &o {lr: *o}\n", "a YAML alias makes a value contain itself (recursive alias)"),
        (b"a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + b"".join(
            f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n".encode() for p, c in zip("abcde", "bcdef")),
         "expands to more than 100000 values"),
        (b"\xff\xfe\x00name: x\n", "not UTF-8 text (byte 0)"),
        (b"seed: 2001-02-30\n", "a value YAML cannot represent"),
        (b"[" * 2000, "YAML nested too deeply"),
        (b"name: !!python/object/apply:os.system ['true']\n", "not valid YAML"),
    ],
    ids=["recursive-list", "recursive-map", "billion-laughs", "undecodable", "bad-date", "deep", "python-tag"],
)
def test_bad_yaml_names_the_file(content, message, tmp_path, capsys) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_bytes(content)
    error = _error(["distill", "--config", str(path), "--print-config"], capsys)
    assert f"{path}: {message}" in error, error


def test_config_is_a_directory_or_not_finite(tmp_path, capsys) -> None:
    error = _error(["distill", "--config", str(tmp_path), "--print-config"], capsys)
    assert f"{tmp_path}: is a directory; expected a YAML file" in error, error
    for override, shown in [("optim.lr=.inf", "inf"), ("optim.lr=.nan", "nan"), ("data.crop_seconds=1e999", "'1e999'")]:
        error = _error(["distill", "--config", str(TINY_RECIPE), override, "--print-config"], capsys)
        key = override.split("=")[0]
        assert f"{TINY_RECIPE}: {key}: expected a finite number, got {shown}" in error, error


def test_a_pickle_given_to_resume(distill_work, tmp_path, capsys) -> None:
    argv = ["distill", "--config", str(TINY_RECIPE), *overrides(distill_work, tmp_path / "run")]
    with (tmp_path / "state.pkl").open("wb") as f:
        pickle.dump({"state_dict": {}}, f)
    error = _error([*argv, "--resume", str(tmp_path / "state.pkl")], capsys)
    assert f"{tmp_path / 'state.pkl'}: does not load (not a readable PyTorch checkpoint" in error, error
    assert "weights_only" not in error, error
    torch.save({"state_dict": {"student.w": torch.zeros(1)}}, tmp_path / "other.ckpt")
    error = _error([*argv, "--resume", str(tmp_path / "other.ckpt")], capsys)
    assert f"{tmp_path / 'other.ckpt'}: not an armdistill distillation checkpoint" in error, error
    error = _error([*argv, "--resume", str(tmp_path / "none.ckpt")], capsys)
    assert f"{tmp_path / 'none.ckpt'}: no such checkpoint file" in error, error


def test_bugs_keep_their_traceback(monkeypatch) -> None:
    def bug(args) -> int:
        raise ValueError("a bug, not the user's input")

    monkeypatch.setattr("armdistill.models.commands._info", bug)
    with pytest.raises(ValueError, match="a bug"):
        main(["info", "--preset", "tiny-arm"])


class _BadItem(Dataset):
    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> None:
        raise DataError("clips.tsv:2: a.wav: 3 non-finite samples")


def test_errors_from_loader_workers_stay_one_line() -> None:
    with pytest.raises(DataError) as info:
        next(iter(DataLoader(_BadItem(), num_workers=1)))
    assert "Original Traceback" in str(info.value)
    assert error_line(info.value) == "clips.tsv:2: a.wav: 3 non-finite samples"


# -- fuzzing: random and mutated bytes -------------------------------------------------------
TOKENS = [b"\t", b"\n", b"\x00", b"\r", b"\xff", b"\xc3\xa9", b"\xe2\x80\xa8", b"-1", b"1e999", b"99999999999999999999",
          b"&a", b"*a", b"[", b"{", b": ", b"- ", b"<<: *a", b".inf", b".nan", b"!!python/object/apply:os.system ['true']",
          b"~", b"'", b'"', b"#", b"\xef\xbb\xbf", b"\xd9\xa3"]


def _mutations(seed: bytes, count: int, rng: np.random.Generator) -> list[bytes]:
    out = []
    for i in range(count):
        data = bytearray(seed)
        if i % 5 == 0:
            out.append(rng.bytes(int(rng.integers(0, 300))))
            continue
        for _ in range(int(rng.integers(1, 6))):
            at = int(rng.integers(0, len(data) + 1))
            choice = int(rng.integers(0, 4))
            if choice == 0 and data:
                data[min(at, len(data) - 1)] = int(rng.integers(0, 256))
            elif choice == 1:
                data[at:at] = TOKENS[int(rng.integers(0, len(TOKENS)))]
            elif choice == 2:
                del data[at:at + int(rng.integers(1, 40))]
            else:
                data[at:at] = data[max(0, at - 60):at]
        out.append(bytes(data))
    return out


def _fuzz(seeds: list[bytes], read, tmp_path: Path, suffix: str) -> int:
    """Feed 300 inputs mutated from ``seeds`` to ``read``; any outcome but success or a UserError naming the
    file fails. Returns the number of inputs refused."""
    rng = np.random.default_rng(0)
    inputs = [data for seed in seeds for data in _mutations(seed, 300 // len(seeds), rng)]
    refused = 0
    for i, data in enumerate(inputs):
        path = tmp_path / f"input{i}{suffix}"
        path.write_bytes(data)
        try:
            read(path)
        except UserError as err:
            assert str(path) in str(err), (data, err)
            refused += 1
    assert not (tmp_path / "true").exists()
    return refused


def test_fuzzed_manifests_give_user_errors_naming_the_file(tmp_path) -> None:
    entries = b"a.wav\t16000\nsub/b.wav\t32000\n\nc d.flac\t8000\n"
    refused = _fuzz([str(tmp_path).encode() + b"\n" + entries, b"audio\n" + entries], read_manifest, tmp_path, ".tsv")
    assert 50 < refused < 300


def test_fuzzed_recipes_give_user_errors_naming_the_file(tmp_path) -> None:
    refused = _fuzz([TINY_RECIPE.read_bytes()], load_config, tmp_path, ".yaml")
    assert 50 < refused < 300


def test_console_hides_library_noise_but_not_ours() -> None:
    import logging
    import multiprocessing
    import warnings
    from concurrent.futures import ProcessPoolExecutor

    from armdistill.console import LIBRARY_LOGGERS, LIBRARY_NOISE, apply_console_state, console_state, quiet_libraries

    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric", "transformers")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_libraries()
        warnings.warn("torch.utils._pytree.LeafSpec is deprecated", FutureWarning)
        warnings.warn("armdistill: 3 files skipped", UserWarning)
        # a spawned worker (the ablation's) starts with Python's defaults unless handed ours
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=apply_console_state, initargs=(console_state(),)) as pool:
            filters, worker_levels = pool.submit(console_state).result()
    assert [str(w.message) for w in seen] == ["armdistill: 3 files skipped"]
    assert logging.getLogger("lightning.pytorch").getEffectiveLevel() == logging.WARNING
    assert worker_levels == dict.fromkeys(LIBRARY_LOGGERS, logging.WARNING)
    assert {f[1].pattern for f in filters if f[0] == "ignore" and f[1] is not None} >= set(LIBRARY_NOISE)
    for logger, level in zip(loggers, levels):
        logger.setLevel(level)
