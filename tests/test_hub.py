"""Hub ids (``org/name[@revision]``) for students, teachers and upstreams, read offline from a cache
laid out as huggingface_hub lays it out."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from armdistill.errors import UserError
from armdistill.export.hf import export
from armdistill.io.digest import weights_digest
from armdistill.io.hub import ModelNotFoundError, resolve_pretrained
from armdistill.models.student import Student
from armdistill.teachers import Teacher, make_random_teacher

REV_MAIN, REV_OLD = "1" * 40, "2" * 40


def lay_out_snapshot(cache: Path, repo_id: str, directory: Path, revision: str, main: bool) -> None:
    """``directory``'s files as huggingface_hub caches a snapshot: blobs by content hash, the
    snapshot's files as relative symlinks to them, ``refs/main`` naming the revision when ``main``."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        data = path.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / revision / path.relative_to(directory)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    if main:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(revision)


CHILD = """
import json, sys
from armdistill.cli import main
from armdistill.errors import UserError
from armdistill.eval.upstream import load_upstream
from armdistill.io.digest import weights_digest
from armdistill.models.student import Student
from armdistill.teachers import Teacher

old = sys.argv[1]
report = {
    "student": weights_digest(Student.from_pretrained("org/student")),
    "student_old": weights_digest(Student.from_pretrained("org/student@" + old)),
    "student_main": weights_digest(Student.from_pretrained("org/student@main")),
    "exported": weights_digest(Student.from_pretrained("org/exported")),
    "teacher": Teacher.from_pretrained("org/teacher").fingerprint(),
    "upstream_exported": type(load_upstream("org/exported")).__name__,
    "upstream_teacher": load_upstream("teacher:org/teacher").fingerprint(),
    "info": main(["info", "org/student", "--json"]),
    "errors": {},
}
for spec in ("org/missing", "org/student@nope"):
    try:
        Student.from_pretrained(spec)
    except UserError as err:
        report["errors"][spec] = str(err)
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    students = {}
    for revision, seed in ((REV_MAIN, 0), (REV_OLD, 1)):
        torch.manual_seed(seed)
        students[revision] = Student.from_preset("tiny-arm")
        students[revision].save_pretrained(root / f"student-{seed}")
        lay_out_snapshot(root / "cache", "org/student", root / f"student-{seed}", revision, main=revision == REV_MAIN)
    export(root / "student-0", root / "exported")
    lay_out_snapshot(root / "cache", "org/exported", root / "exported", REV_MAIN, main=True)
    teacher_dir = make_random_teacher(root / "teacher")
    lay_out_snapshot(root / "cache", "org/teacher", teacher_dir, REV_MAIN, main=True)
    return root, students, Teacher.from_pretrained(teacher_dir)


def test_hub_ids_resolve_offline_from_the_cache(cache):
    root, students, teacher = cache
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(root / "cache"), "HF_HOME": str(root / "home"),
           "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", CHILD, REV_OLD], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    info = json.loads("\n".join(result.stdout.strip().splitlines()[:-1]))
    main_digest = weights_digest(students[REV_MAIN])
    assert report["student"] == report["student_main"] == report["exported"] == main_digest
    assert report["student_old"] == weights_digest(students[REV_OLD]) != main_digest
    assert report["teacher"] == teacher.fingerprint()
    assert report["upstream_exported"] == "StudentUpstream"
    assert report["upstream_teacher"] == f"teacher:normalize=False:{teacher.fingerprint()}"
    assert report["info"] == 0 and info["params_total"] == students[REV_MAIN].num_parameters()["params_total"]
    for spec, message in report["errors"].items():
        assert f"student {spec!r}: no such local file or directory, and as a Hub id:" in message
        assert "HF_HUB_OFFLINE" in message


@pytest.mark.parametrize("spec", ["no-such-dir", "a/b/c", "org/name@", "./org/name", "../name"])
def test_a_spec_that_is_neither_a_path_nor_a_hub_id_names_both_readings(spec, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelNotFoundError, match="no such local file or directory, and not a Hub id of the form org/name"):
        resolve_pretrained(spec, "teacher")


def test_an_existing_local_path_is_a_path_even_when_it_reads_as_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "name").mkdir(parents=True)
    assert resolve_pretrained("org/name", "student") == Path("org/name")


def test_a_remote_code_export_is_refused_as_a_teacher(cache):
    root = cache[0]
    with pytest.raises(UserError, match="auto_map names model code of its own, which is never run"):
        Teacher.from_pretrained(root / "exported")
