"""Nothing in a file we are asked to read ever runs: every loader refuses hostile pickles and
TorchScript archives with our message, and the marker file their code would write never appears."""

from __future__ import annotations

import re
import shutil
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from _distill_helpers import TINY_RECIPE, overrides
from _hostile import marker_runs_when_loaded_unsafely, write_pickle_exploit, write_torchscript_exploit
from armdistill.cli import main
from armdistill.errors import FileFormatError, RefusedError
from armdistill.io.safe_pickle import safe_torch_load
from armdistill.teachers import Teacher, make_random_teacher

KINDS = ("pickle", "torchscript")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """kind -> (hostile file, the marker its code writes); each exploit shown live first."""
    root = tmp_path_factory.mktemp("hostile")
    files = {
        "pickle": write_pickle_exploit(root / "pickle.pt", root / "pickle.ran", {"model": {"w": torch.zeros(1)}}),
        "torchscript": write_torchscript_exploit(root / "torchscript.pt", root / "torchscript.ran"),
    }
    out = {}
    for kind, path in files.items():
        marker = root / f"{kind}.ran"
        assert marker_runs_when_loaded_unsafely(path, marker), kind
        out[kind] = (path, marker)
    return out


def _cli_refuses(argv: list[str], path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    err = lines[-1]  # progress bars and logs may come before it
    assert err.startswith(f"armdistill {argv[0]}: error: ") and sum("error:" in line for line in lines) == 1, lines
    assert str(path) in err and "nothing from it was run" in err, err
    assert "weights_only" not in err and "Re-running" not in err, err
    return err


def _expected(kind: str) -> str:
    """The refusal's wording, as a regex (pickle protocol 2 spells the builtins module ``__builtin__``)."""
    return r"refusing to load global (__builtin__|builtins)\.exec" if kind == "pickle" else "refused: a TorchScript archive"


@pytest.mark.parametrize("kind", KINDS)
def test_convert_teacher_refuses(hostile, kind, tmp_path, capsys) -> None:
    path, marker = hostile[kind]
    assert re.search(_expected(kind), _cli_refuses(["convert-teacher", str(path), str(tmp_path / "out")], path, capsys))
    assert not marker.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", KINDS)
def test_import_release_refuses(hostile, kind, tmp_path, capsys) -> None:
    path, marker = hostile[kind]
    assert re.search(_expected(kind), _cli_refuses(["import-release", str(path), str(tmp_path / "out")], path, capsys))
    assert not marker.exists()


@pytest.mark.parametrize("kind", KINDS)
def test_teacher_from_pretrained_refuses(hostile, kind) -> None:
    path, marker = hostile[kind]
    with pytest.raises(RefusedError, match=_expected(kind)) as info:
        Teacher.from_pretrained(path)
    assert str(path) in str(info.value) and not marker.exists()


@pytest.mark.parametrize("kind", KINDS)
def test_probe_upstream_refuses(hostile, kind, tmp_path, capsys) -> None:
    path, marker = hostile[kind]
    manifest = str(tmp_path / "unused.tsv")
    argv = ["probe", "--task", "ks", "--upstream", f"teacher:{path}", "--train", manifest, "--valid", manifest,
            "--test", manifest, "--cache-dir", str(tmp_path / "cache")]
    assert re.search(_expected(kind), _cli_refuses(argv, path, capsys))
    assert not marker.exists()


@pytest.mark.parametrize("kind", KINDS)
def test_distill_teacher_path_refuses(hostile, kind, tmp_path, capsys) -> None:
    path, marker = hostile[kind]
    argv = ["distill", "--config", str(TINY_RECIPE), f"teacher.path={path}", f"data.train={tmp_path / 'train.tsv'}",
            "data.valid=null", f"output_dir={tmp_path / 'run'}"]
    assert re.search(_expected(kind), _cli_refuses(argv, path, capsys))
    assert not marker.exists()


@pytest.mark.parametrize("kind", KINDS)
def test_distill_resume_refuses(hostile, kind, distill_work, tmp_path, capsys) -> None:
    path, marker = hostile[kind]
    argv = ["distill", "--config", str(TINY_RECIPE), *overrides(distill_work, tmp_path / "run"), "--resume", str(path)]
    assert re.search(_expected(kind), _cli_refuses(argv, path, capsys))
    assert not marker.exists() and not (tmp_path / "run" / "student").exists()


def _bin_dir(teacher_dir: Path, directory: Path, weights: Path | None, keep_safetensors: bool = False) -> Path:
    """A transformers directory with ``weights`` as its pytorch_model.bin."""
    directory.mkdir()
    for item in teacher_dir.iterdir():
        if item.name != "model.safetensors" or keep_safetensors:
            shutil.copy(item, directory / item.name)
    if weights is not None:
        shutil.copy(weights, directory / "pytorch_model.bin")
    return directory


@pytest.mark.parametrize("kind", KINDS)
def test_transformers_pytorch_model_bin_refuses(hostile, kind, distill_work, tmp_path) -> None:
    path, marker = hostile[kind]
    directory = _bin_dir(distill_work["teacher"], tmp_path / "teacher", path)
    with pytest.raises(RefusedError, match=_expected(kind)) as info:
        Teacher.from_pretrained(directory)
    assert str(directory / "pytorch_model.bin") in str(info.value) and "weights_only" not in str(info.value)
    assert not marker.exists()
    # beside safetensors weights, a hostile pytorch_model.bin is never opened
    both = _bin_dir(distill_work["teacher"], tmp_path / "both", path, keep_safetensors=True)
    assert Teacher.from_pretrained(both).fingerprint() == Teacher.from_pretrained(distill_work["teacher"]).fingerprint()
    assert not marker.exists()


def test_transformers_pytorch_model_bin_loads_through_our_reader(distill_work, tmp_path) -> None:
    reference = Teacher.from_pretrained(distill_work["teacher"])
    state = reference.model.state_dict()
    # a legacy name transformers renames on load: the weight-norm halves of the positional conv
    prefix = "encoder.pos_conv_embed.conv."
    state[prefix + "weight_g"] = state.pop(prefix + "parametrizations.weight.original0")
    state[prefix + "weight_v"] = state.pop(prefix + "parametrizations.weight.original1")
    torch.save(state, tmp_path / "weights.bin")
    directory = _bin_dir(distill_work["teacher"], tmp_path / "teacher", tmp_path / "weights.bin")
    assert Teacher.from_pretrained(directory).fingerprint() == reference.fingerprint()
    del state[prefix + "weight_g"]
    torch.save(state, directory / "pytorch_model.bin")
    with pytest.raises(FileFormatError, match=r"teacher: the weights do not match config\.json .*missing"):
        Teacher.from_pretrained(directory)


def _zip_with(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


@pytest.mark.parametrize(
    ("write", "error", "message"),
    [
        (lambda p: _zip_with(p, {"pkg/data.pkl": b"", "pkg/.data/extern_modules": b"", "pkg/evil.py": b""}),
         RefusedError, "a zip archive carrying code"),
        (lambda p: _zip_with(p, {"a/data.pkl": b"", "b/version": b""}), FileFormatError, "without one top folder"),
        (lambda p: _zip_with(p, {"a/version": b"3"}), FileFormatError, "without data.pkl"),
        (lambda p: _zip_with(p, {"a/data.pkl": b""}), FileFormatError, "a zip archive torch cannot read"),
        (lambda p: p.write_bytes(b"PK\x03\x04" + bytes(200)) and p, FileFormatError, "a damaged zip archive"),
        (lambda p: p.write_bytes(b"") and p, FileFormatError, "not a readable PyTorch checkpoint"),
    ],
    ids=["torch-package", "two-folders", "no-data-pkl", "no-version", "damaged-zip", "empty"],
)
def test_safe_torch_load_names_what_the_file_is(tmp_path, write: Callable[[Path], Path], error, message) -> None:
    path = tmp_path / "file.pt"
    write(path)
    with pytest.raises(error, match=message) as info:
        safe_torch_load(path)
    assert str(path) in str(info.value)


def _clear_utf8_flag(raw: bytearray, name: bytes) -> None:
    """Clear the UTF-8 bit of ``name``'s local and central zip headers (30 and 46 bytes before it)."""
    at = raw.find(name)
    while at >= 0:
        for signature, header_size, flag_offset in ((b"PK\x03\x04", 30, 6), (b"PK\x01\x02", 46, 8)):
            header = at - header_size
            if raw[header:header + 4] == signature:
                flags = int.from_bytes(raw[header + flag_offset:header + flag_offset + 2], "little") & ~0x800
                raw[header + flag_offset:header + flag_offset + 2] = flags.to_bytes(2, "little")
        at = raw.find(name, at + 1)


def test_zip_read_differently_by_torch_is_refused(tmp_path) -> None:
    """An entry name without the UTF-8 flag: the standard library decodes it as cp437, torch as UTF-8."""
    torch.save({"w": torch.zeros(1)}, tmp_path / "plain.pt")
    path = tmp_path / "differs.pt"
    with zipfile.ZipFile(tmp_path / "plain.pt") as src, zipfile.ZipFile(path, "w") as out:
        for name in src.namelist():
            out.writestr(name, src.read(name))
        out.writestr("plain/\u00e9", b"")
    raw = bytearray(path.read_bytes())
    _clear_utf8_flag(raw, "plain/\u00e9".encode())
    path.write_bytes(bytes(raw))
    assert "plain/\u00e9" not in zipfile.ZipFile(path).namelist()
    with pytest.raises(RefusedError, match="the standard library and torch read differently"):
        safe_torch_load(path)


def test_legacy_tar_checkpoints_are_not_read(tmp_path) -> None:
    (tmp_path / "pickle").write_bytes(b"")
    with tarfile.open(tmp_path / "old.pt", "w") as tar:
        tar.add(tmp_path / "pickle", arcname="pickle")
    with pytest.raises(FileFormatError, match="legacy tar-format"):
        safe_torch_load(tmp_path / "old.pt")


def test_own_checkpoints_refuse_standins(tmp_path) -> None:
    """Foreign checkpoints may hold fairseq / Lightning classes as inert stand-ins; ours may not."""
    import argparse

    torch.save({"w": torch.ones(2), "args": argparse.Namespace(lr=1.0)}, tmp_path / "ns.pt")
    assert safe_torch_load(tmp_path / "ns.pt", standins=False)["args"].lr == 1.0
    teacher = make_random_teacher(tmp_path / "t", seed=0)
    assert Teacher.from_pretrained(teacher).num_layers == 2
