"""Audio reading, manifests from a LibriSpeech-shaped tree, dataset filters/crops, collation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from armdistill.cli import main
from armdistill.data.audio import AudioFileError, load_audio
from armdistill.data.collate import collate_audio
from armdistill.data.dataset import AudioDataset
from armdistill.data.corpus import build_manifest, words_to_letters
from armdistill.data.manifest import read_labels, read_manifest, write_manifest
from armdistill.data.sampler import DynamicBatchSampler
from armdistill.errors import DataError

RATE = 16000


def write_audio(path: Path, samples: int, rate: int = RATE, channels: int = 1, seed: int = 0) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (samples,) if channels == 1 else (samples, channels)
    audio = (0.1 * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)
    sf.write(path, audio, rate)
    return audio


def fake_librispeech(root: Path) -> dict[str, tuple[str, int]]:
    """``root/dev-tiny/spk/chapter/spk-chapter-NNNN.flac`` + transcripts; one chapter at 22.05 kHz.

    Returns relative path -> (words, samples at 16 kHz).
    """
    expected = {}
    split = root / "dev-tiny"
    for spk, chapter, rate in [(19, 198, RATE), (19, 227, RATE), (84, 121123, 22050)]:
        lines = []
        for utt in range(3):
            uid = f"{spk}-{chapter}-{utt:04d}"
            samples = 1600 * (utt + 1 + spk % 3)
            write_audio(split / str(spk) / str(chapter) / f"{uid}.flac", samples, rate, seed=utt)
            words = f"word{utt} and  {'more ' * utt}text".upper()
            lines.append(f"{uid} {words}")
            size = samples if rate == RATE else -(-samples * 320 // 441)
            expected[f"{spk}/{chapter}/{uid}.flac"] = (" ".join(words.split()), size)
        (split / str(spk) / str(chapter) / f"{spk}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    return expected


def test_words_to_letters() -> None:
    assert words_to_letters("HEY YOU'RE") == "H E Y | Y O U ' R E |"


def test_manifest_command_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    expected = fake_librispeech(tmp_path / "LibriSpeech")
    out = tmp_path / "manifests"
    assert main(["manifest", str(tmp_path / "LibriSpeech" / "dev-tiny"), "--out", str(out), "--quiet"]) == 0
    assert "9 utterances" in capsys.readouterr().out
    manifest = read_manifest(out / "dev-tiny.tsv")
    assert manifest.root == (tmp_path / "LibriSpeech" / "dev-tiny").resolve()
    assert manifest.paths == sorted(expected)
    assert manifest.num_samples == [expected[p][1] for p in manifest.paths]
    words = read_labels(out / "dev-tiny.tsv", "wrd", expected=len(manifest))
    letters = read_labels(out / "dev-tiny.tsv", "ltr", expected=len(manifest))
    assert words == [expected[p][0] for p in manifest.paths]
    assert letters == [words_to_letters(w) for w in words]
    assert words[manifest.paths.index("19/198/19-198-0002.flac")] == "WORD2 AND MORE MORE TEXT"

    dataset = AudioDataset(out / "dev-tiny.tsv")
    assert dataset.sizes == manifest.num_samples
    assert dataset.labels("wrd") == words
    for index in range(len(dataset)):
        assert dataset[index]["wav"].shape == (manifest.num_samples[index],)
    original = sf.read(manifest.audio_path(0), dtype="float32")[0]
    assert torch.equal(dataset[0]["wav"], torch.from_numpy(original))

    # a 22.05 kHz chapter is refused when resampling is off, naming the file
    split = str(tmp_path / "LibriSpeech" / "dev-tiny")
    assert main(["manifest", split, "--out", str(out), "--quiet", "--no-resample"]) == 2
    assert "84-121123-0000.flac: sample rate 22050 Hz" in capsys.readouterr().err


def test_manifest_transcript_mismatch_errors(tmp_path: Path) -> None:
    fake_librispeech(tmp_path)
    chapter = tmp_path / "dev-tiny" / "19" / "198"
    (chapter / "19-198-0001.flac").unlink()
    with pytest.raises(DataError, match=r"19-198\.trans\.txt:2: no audio file 19-198-0001\.flac"):
        build_manifest(tmp_path / "dev-tiny", tmp_path / "out", progress=False)
    (chapter / "19-198.trans.txt").write_text("19-198-0000 HELLO\n19-198-0002 HI\n")
    write_audio(chapter / "19-198-0009.flac", 800)
    with pytest.raises(DataError, match=r"19-198-0009\.flac: no transcript for it in the \*\.trans\.txt files"):
        build_manifest(tmp_path / "dev-tiny", tmp_path / "out", progress=False)


def test_resample_22050_to_16000(tmp_path: Path) -> None:
    t = np.arange(22050) / 22050
    sf.write(tmp_path / "tone.wav", (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 22050, subtype="FLOAT")
    wav = load_audio(tmp_path / "tone.wav")
    assert wav.dtype == np.float32 and wav.shape == (16000,)
    reference = 0.5 * np.sin(2 * np.pi * 440 * np.arange(16000) / RATE)
    # away from the edges the resampled tone matches the tone generated at 16 kHz
    assert np.abs(wav[200:-200] - reference[200:-200]).max() < 1e-2
    assert load_audio(tmp_path / "tone.wav", start=100, stop=600).shape == (500,)
    with pytest.raises(ValueError, match=r"tone\.wav: sample rate 22050 Hz; expected 16000 Hz"):
        load_audio(tmp_path / "tone.wav", resample=False)


def test_stereo_is_an_error_naming_the_file(tmp_path: Path) -> None:
    write_audio(tmp_path / "stereo.flac", 1600, channels=2)
    with pytest.raises(ValueError, match=r"stereo\.flac: 2 channels; expected mono"):
        load_audio(tmp_path / "stereo.flac")
    write_manifest(tmp_path / "m.tsv", tmp_path, [("stereo.flac", 1600)])
    with pytest.raises(ValueError, match=r"m\.tsv:2: .*stereo\.flac: 2 channels"):
        AudioDataset(tmp_path / "m.tsv")[0]


def test_bad_manifest_lines_name_file_and_line(tmp_path: Path) -> None:
    write_audio(tmp_path / "a.wav", 1600)
    (tmp_path / "bad.tsv").write_text(f"{tmp_path}\na.wav\t1600\nb.wav\tmany\n")
    with pytest.raises(ValueError, match=r"bad\.tsv:3: expected 'relative_path<TAB>num_samples'"):
        AudioDataset(tmp_path / "bad.tsv")
    # a stale size would break the batch budget, so it is refused
    (tmp_path / "stale.tsv").write_text(f"{tmp_path}\n\na.wav\t1500\n")
    with pytest.raises(AudioFileError, match=r"stale\.tsv:3: .*a\.wav: the header gives 1600 samples at 16000 Hz "
                       r"where the manifest lists 1500"):
        AudioDataset(tmp_path / "stale.tsv")[0]
    (tmp_path / "missing.tsv").write_text(f"{tmp_path}\nnone.wav\t10\n")
    with pytest.raises(AudioFileError, match=r"missing\.tsv:2: .*none\.wav: audio file not found"):
        AudioDataset(tmp_path / "missing.tsv")[0]


def test_duration_filters_keep_labels_aligned(tmp_path: Path) -> None:
    seconds = [0.5, 1.0, 2.0, 3.0, 4.5]
    rows = [(f"{i}.wav", int(s * RATE)) for i, s in enumerate(seconds)]
    write_manifest(tmp_path / "m.tsv", tmp_path, rows)
    (tmp_path / "m.wrd").write_text("".join(f"W{i}\n" for i in range(len(rows))))
    dataset = AudioDataset(tmp_path / "m.tsv", min_seconds=1.0, max_seconds=3.0)
    assert dataset.kept == [1, 2, 3]
    assert dataset.sizes == [16000, 32000, 48000]
    assert dataset.labels("wrd") == ["W1", "W2", "W3"]
    with pytest.raises(ValueError, match=r"m\.tsv: no utterance lasts between 5.0 and 6.0 s"):
        AudioDataset(tmp_path / "m.tsv", min_seconds=5.0, max_seconds=6.0)


def test_random_crop_is_seeded_per_epoch_and_index(tmp_path: Path) -> None:
    ramp = np.arange(RATE, dtype=np.float32) / RATE
    sf.write(tmp_path / "ramp.wav", ramp, RATE, subtype="FLOAT")
    sf.write(tmp_path / "short.wav", ramp[:4000], RATE, subtype="FLOAT")
    write_manifest(tmp_path / "m.tsv", tmp_path, [("ramp.wav", RATE), ("short.wav", 4000)])
    dataset = AudioDataset(tmp_path / "m.tsv", crop_seconds=0.5, seed=1)
    assert dataset.sizes == [8000, 4000]
    np.random.seed(123)
    before = np.random.random_sample()
    np.random.seed(123)
    crops = {}
    for epoch in range(4):
        dataset.set_epoch(epoch)
        wav = dataset[0]["wav"].numpy()
        start = int(round(wav[0] * RATE))
        assert wav.shape == (8000,) and np.array_equal(wav, ramp[start : start + 8000])
        crops[epoch] = start
        assert dataset[1]["wav"].shape == (4000,)
    assert np.random.random_sample() == before  # the global RNG was not touched
    assert len(set(crops.values())) > 1
    again = AudioDataset(tmp_path / "m.tsv", crop_seconds=0.5, seed=1)
    again.set_epoch(2)
    assert int(round(again[0]["wav"][0].item() * RATE)) == crops[2]


def test_collate_pads_with_zeros() -> None:
    items = [{"index": 4, "wav": torch.ones(3)}, {"index": 1, "wav": torch.full((5,), 2.0)}]
    batch = collate_audio(items)
    assert batch["wav"].tolist() == [[1, 1, 1, 0, 0], [2, 2, 2, 2, 2]]
    assert batch["lengths"].tolist() == [3, 5]
    assert batch["indices"].tolist() == [4, 1]


def test_dataloader_batches_within_budget(tmp_path: Path) -> None:
    lengths = [800 * (1 + (i * 7) % 13) for i in range(30)]
    rows = []
    for i, n in enumerate(lengths):
        write_audio(tmp_path / f"{i}.wav", n, seed=i)
        rows.append((f"{i}.wav", n))
    write_manifest(tmp_path / "m.tsv", tmp_path, rows)
    dataset = AudioDataset(tmp_path / "m.tsv")
    sampler = DynamicBatchSampler(dataset.sizes, max_seconds=2.0, num_buckets=3, seed=0)
    seen = []
    for batch in DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_audio):
        assert batch["wav"].numel() <= 2 * RATE
        assert batch["lengths"].tolist() == [lengths[i] for i in batch["indices"].tolist()]
        seen += batch["indices"].tolist()
    assert sorted(seen) == list(range(30))


def test_manifest_command_several_splits(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    fake_librispeech(tmp_path)
    for utt in range(2):
        write_audio(tmp_path / "unlabelled" / "7" / "1" / f"7-1-{utt:04d}.flac", 2000 + utt)
    splits = [str(tmp_path / "dev-tiny"), str(tmp_path / "unlabelled")]
    assert main(["manifest", *splits, "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert "unlabelled.tsv (no transcripts): 2 utterances" in capsys.readouterr().out
    assert read_manifest(tmp_path / "out" / "unlabelled.tsv").num_samples == [2000, 2001]
    assert len(read_manifest(tmp_path / "out" / "dev-tiny.tsv")) == 9
    assert not (tmp_path / "out" / "unlabelled.wrd").exists()
    assert main(["manifest", *splits, splits[0], "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert "share the name(s) dev-tiny" in capsys.readouterr().err
