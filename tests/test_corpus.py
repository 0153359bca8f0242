"""``manifest`` on any folder tree (mixed formats, nested, with and without transcripts) and
``check-data`` finding every planted fault in one pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from armdistill.cli import main
from armdistill.data.manifest import read_labels, read_manifest, write_manifest

RATE = 16000


def tone(samples: int, seed: int = 0, channels: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (samples,) if channels == 1 else (samples, channels)
    return (0.1 * rng.standard_normal(shape)).astype(np.float32)


def mixed_tree(root: Path) -> dict[str, int]:
    """Nested wav / FLAC / Ogg files, one at 22.05 kHz, plus files that are not audio; rel path -> size at 16 kHz."""
    files = {"a/one.wav": (8000, RATE), "a/deep/er/two.flac": (12000, RATE), "three.ogg": (6000, RATE),
             "b/four.WAV": (22050, 22050)}
    for i, (rel, (n, rate)) in enumerate(files.items()):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / rel, tone(n, i), rate)
    (root / "a" / "README.md").write_text("not audio")
    (root / "b" / "notes.csv").write_text("1,2\n")
    return {rel: n if rate == RATE else 16000 for rel, (n, rate) in files.items()}


def test_manifest_of_a_nested_mixed_folder_with_and_without_transcripts(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    corpus = tmp_path / "corpus"
    sizes = mixed_tree(corpus)
    out = tmp_path / "out"
    assert main(["manifest", str(corpus), "--out", str(out), "--quiet"]) == 0
    assert "corpus.tsv (no transcripts): 4 utterances" in capsys.readouterr().out
    manifest = read_manifest(out / "corpus.tsv")
    assert manifest.root == corpus.resolve() and manifest.paths == sorted(sizes)
    assert manifest.num_samples == [sizes[p] for p in manifest.paths]
    assert not (out / "corpus.wrd").exists()

    # sidecar NAME.txt transcripts beside every file
    texts = {"a/one.wav": "hello  there", "a/deep/er/two.flac": "über straße", "three.ogg": "x", "b/four.WAV": "y z"}
    for rel, text in texts.items():
        (corpus / rel).with_suffix(".txt").write_text(text + "\n", encoding="utf-8")
    assert main(["manifest", str(corpus), "--out", str(out), "--quiet"]) == 0
    assert "+ .wrd/.ltr (sidecar)" in capsys.readouterr().out
    words = read_labels(out / "corpus.tsv", "wrd", expected=4)
    assert words == [" ".join(texts[p].split()) for p in manifest.paths]
    assert read_labels(out / "corpus.tsv", "ltr", expected=4)[manifest.paths.index("a/one.wav")] == "h e l l o | t h e r e |"

    # a TSV of id<TAB>text: paths without extension or unique bare names; ids of other folders are ignored
    tsv = tmp_path / "text.tsv"
    tsv.write_text("a/one\tfirst\ntwo\tsecond\nthree\tthird\nb/four\tfourth\nother/five\tnot here\n", encoding="utf-8")
    assert main(["manifest", str(corpus), "--out", str(out), "--quiet", "--transcripts", str(tsv)]) == 0
    assert "(tsv)" in capsys.readouterr().out
    by_path = dict(zip(manifest.paths, read_labels(out / "corpus.tsv", "wrd", expected=4)))
    assert by_path == {"a/one.wav": "first", "a/deep/er/two.flac": "second", "three.ogg": "third", "b/four.WAV": "fourth"}

    # --glob takes only what it matches; a file without a transcript is named
    assert main(["manifest", str(corpus), "--out", str(out / "flac"), "--quiet", "--glob", "**/*.flac"]) == 0
    assert read_manifest(out / "flac" / "corpus.tsv").paths == ["a/deep/er/two.flac"]
    tsv.write_text("a/one\tfirst\ntwo\tsecond\n", encoding="utf-8")
    assert main(["manifest", str(corpus), "--out", str(out), "--quiet", "--transcripts", str(tsv)]) == 2
    err = capsys.readouterr().err
    assert "b/four.WAV: no transcript for it in" in err and "(2 of 4 files lack one)" in err


def plant_faults(root: Path) -> tuple[Path, dict[int, str]]:
    """A manifest of good files and one of each fault; returns it and manifest line -> expected problem."""
    rows, faults = [], {}

    def add(name: str, listed: int, problem: str | None = None) -> None:
        rows.append((name, listed))
        if problem is not None:
            faults[len(rows) + 1] = problem  # line 1 is the root

    for i in range(3):
        sf.write(root / f"good{i}.wav", tone(4000 + i, i), RATE)
        add(f"good{i}.wav", 4000 + i)
    add("missing.wav", 4000, "audio file not found")
    (root / "empty.wav").write_bytes(b"")
    add("empty.wav", 4000, "cannot read audio header")
    (root / "garbage.flac").write_bytes(np.random.default_rng(0).bytes(3000))
    add("garbage.flac", 4000, "cannot read audio header")
    sf.write(root / "stereo.wav", tone(4000, channels=2), RATE)
    add("stereo.wav", 4000, "2 channels; expected mono audio")
    wav = tone(4000)
    wav[100:103] = [np.nan, np.inf, -np.inf]
    sf.write(root / "nan.wav", wav, RATE, subtype="FLOAT")
    add("nan.wav", 4000, "3 non-finite samples")
    sf.write(root / "stale.wav", tone(4000), RATE)
    add("stale.wav", 5000, "the header gives 4000 samples at 16000 Hz where the manifest lists 5000")
    sf.write(root / "short.wav", tone(100), RATE)
    add("short.wav", 100, "100 samples, shorter than one frame (400 samples)")
    for name in ("cut.flac", "cut.wav"):  # the second half cut off
        sf.write(root / name, tone(16000), RATE)
        data = (root / name).read_bytes()
        (root / name).write_bytes(data[: len(data) // 2])
    cut_wav_bytes = (root / "cut.wav").stat().st_size  # 16-bit PCM after a 44-byte header
    add("cut.flac", 16000, "cannot decode audio")
    add("cut.wav", 16000, f"the header gives {(cut_wav_bytes - 44) // 2} samples at 16000 Hz where the manifest lists 16000")
    manifest = root / "train.tsv"
    write_manifest(manifest, root, rows)
    (root / "train.wrd").write_text("".join(f"W{i}\n" for i in range(len(rows))))
    return manifest, faults


def test_check_data_reports_every_planted_fault_in_one_pass(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    manifest, faults = plant_faults(tmp_path)
    clean = tmp_path / "clean"
    assert main(["check-data", str(manifest), "--workers", "2", "--quiet", "--write-clean", str(clean)]) == 1
    out = capsys.readouterr().out.splitlines()
    reported = [line for line in out if line.startswith(f"{manifest.resolve()}:") or line.startswith(f"{manifest}:")]
    problems = {int(line.split(":")[1]): line for line in reported if line.split(":")[1].isdigit()}
    assert sorted(problems) == sorted(faults)
    for line, problem in faults.items():
        assert problem in problems[line], problems[line]
    assert f"{manifest}: {len(faults)} of 12 files unusable" in out
    cleaned = read_manifest(clean / "train.tsv")
    assert cleaned.paths == ["good0.wav", "good1.wav", "good2.wav"] and cleaned.root == tmp_path.resolve()
    assert read_labels(clean / "train.tsv", "wrd", expected=3) == ["W0", "W1", "W2"]
    assert main(["check-data", str(clean / "train.tsv"), "--workers", "1", "--quiet"]) == 0
    # resampling off: a file at another rate is a fault too
    sf.write(tmp_path / "fast.wav", tone(2205), 22050)
    write_manifest(tmp_path / "rate.tsv", tmp_path, [("fast.wav", 1600)])
    assert main(["check-data", str(tmp_path / "rate.tsv"), "--quiet", "--no-resample", "--workers", "1"]) == 1
    assert "rate.tsv:2: " in capsys.readouterr().out
