"""The data layouts scripts/s3prl_check.py builds for s3prl's runner, read back without s3prl:
the LibriSpeech tree through armdistill's own LibriSpeech reader, the lexicon through its lexicon
reader, the Fluent Speech Commands CSVs and the character dictionary as s3prl parses them."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from armdistill.data.lexicon import read_lexicon
from armdistill.data.librispeech import read_transcripts
from armdistill.data.manifest import write_manifest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "s3prl_check.py"
SENTENCES = {"train": ["ben saw a cat", "a cat saw ben"], "valid": ["ben ran"], "test": ["a cat ran", "ran"]}
# Each word's phones, and the alignment spans s3prl_check reads them from (silence between words).
PHONES = {"ben": ["B", "EH", "N"], "saw": ["S", "AO"], "a": ["AH"], "cat": ["K", "AE", "T"], "ran": ["R", "AE", "N"]}


@pytest.fixture(scope="module")
def check():
    spec = importlib.util.spec_from_file_location("s3prl_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _alignment(uid: str, words: list[str]) -> dict:
    phones, spans, t = [{"phone": "SIL", "start": 0.0, "end": 0.1}], [], 0.1
    for word in words:
        start = t
        for p in PHONES[word]:
            phones.append({"phone": p, "start": t, "end": t + 0.05})
            t += 0.05
        spans.append({"word": word, "start": start, "end": t})
        phones.append({"phone": "SIL", "start": t, "end": t + 0.02})
        t += 0.02
    return {"id": uid, "phones": phones, "words": spans}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A speech corpus in ``armdistill synth``'s layout and a three-split keyword set."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    for split, sentences in SENTENCES.items():
        rows, speakers = [], []
        for i, text in enumerate(sentences):
            rel, spk = f"audio/{split}/{split}-{i}.flac", f"spk{i % 2:02d}"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            sf.write(root / rel, 0.1 * rng.standard_normal(1600 + 160 * i).astype(np.float32), 16000)
            rows.append((rel, 1600 + 160 * i))
            speakers.append(spk)
        write_manifest(root / f"{split}.tsv", ".", rows)
        (root / f"{split}.wrd").write_text("".join(t + "\n" for t in sentences))
        (root / f"{split}.spk").write_text("".join(s + "\n" for s in speakers))
        (root / f"{split}.ali.jsonl").write_text(
            "".join(json.dumps(_alignment(f"{split}-{i}", t.split())) + "\n" for i, t in enumerate(sentences)))
    for split, labels in {"ks_train": ["yes", "no", "yes"], "ks_valid": ["no"], "ks_test": ["yes"]}.items():
        rows = []
        for i in range(len(labels)):
            rel = f"audio/{split}/{split}-{i}.flac"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            sf.write(root / rel, 0.1 * rng.standard_normal(16000).astype(np.float32), 16000)
            rows.append((rel, 16000))
        write_manifest(root / f"{split}.tsv", ".", rows)
        (root / f"{split}.lbl").write_text("".join(label + "\n" for label in labels))
        (root / f"{split}.spk").write_text("".join(f"spk{i:02d}\n" for i in range(len(labels))))
    return root


def test_librispeech_tree_reads_back_with_our_reader(check, corpus: Path, tmp_path: Path):
    root = tmp_path / "LibriSpeech"
    transcripts = check.build_librispeech(corpus, root)
    assert transcripts == [t.upper() for split in ("train", "valid", "test") for t in SENTENCES[split]]
    for split, libri in (("train", "train-clean-100"), ("valid", "dev-clean"), ("test", "test-clean")):
        read = read_transcripts(root / libri)
        assert sorted(read.values()) == sorted(t.upper() for t in SENTENCES[split])
        for audio in read:
            speaker, chapter, _ = audio.stem.split("-")
            assert audio.parent == root / libri / speaker / chapter and sf.info(audio).samplerate == 16000
    table = (root / "SPEAKERS.TXT").read_text().splitlines()
    assert "SEX" in table[0] and "SUBSET" in table[0] and len(table) == 1 + 2
    assert [len(line.split("|", maxsplit=4)) for line in table[1:]] == [5, 5]


def test_char_dict_and_lexicon(check, corpus: Path, tmp_path: Path):
    check.write_char_dict(["BEN SAW", "A CAT"], tmp_path / "char.dict")
    counts = dict(line.rsplit(" ", 1) for line in (tmp_path / "char.dict").read_text().splitlines())
    assert counts == {"|": "4", "A": "3", "B": "1", "E": "1", "N": "1", "S": "1", "W": "1", "C": "1", "T": "1"}
    assert check.write_lexicon(corpus, tmp_path / "lexicon.txt") == len(PHONES)
    assert read_lexicon(tmp_path / "lexicon.txt") == {w.upper(): tuple(p) for w, p in PHONES.items()}


def test_fluent_layout(check, corpus: Path, tmp_path: Path):
    root = tmp_path / "fluent"
    check.build_fluent(corpus, root)
    with open(root / "data" / "train_data.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [(r["action"], r["object"], r["location"]) for r in rows] == [("yes", "none", "none"), ("no", "none", "none"),
                                                                        ("yes", "none", "none")]
    assert all(sf.info(root / r["path"]).frames == 16000 for r in rows)
    assert [p.name for p in sorted((root / "data").iterdir())] == ["test_data.csv", "train_data.csv", "valid_data.csv"]
