"""Lexicon-based phone labels: exact conversion on a hand example, stress and alternates,
errors that name the missing words or the bad line, skipping with filtered labels, the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from armdistill.cli import main
from armdistill.data.lexicon import MissingWordsError, phonemize_manifest, read_lexicon, to_phones
from armdistill.data.manifest import read_manifest, write_manifest

LEXICON = """\
;;; a CMUdict-style comment
HELLO\tHH AH0 L OW1
HELLO  HH EH0 L OW1
WORLD W ER1 L D
DON'T\tD OW1 N T
READ(2) R EH1 D
READ R IY1 D
the DH AH0
"""


@pytest.fixture
def lexicon_file(tmp_path: Path) -> Path:
    path = tmp_path / "lexicon.txt"
    path.write_text(LEXICON)
    return path


def split(root: Path, words: list[str], name: str = "dev") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    manifest = root / f"{name}.tsv"
    write_manifest(manifest, root, [(f"{i}.flac", 16000 + i) for i in range(len(words))])
    (root / f"{name}.wrd").write_text("".join(w + "\n" for w in words))
    (root / f"{name}.ltr").write_text("".join(" ".join(w.replace(" ", "|")) + " |\n" for w in words))
    return manifest


def test_lexicon_strips_stress_keeps_first_pronunciation_and_skips_alternates(lexicon_file: Path):
    lexicon = read_lexicon(lexicon_file)
    assert lexicon["HELLO"] == ("HH", "AH", "L", "OW")
    assert lexicon["READ"] == ("R", "IY", "D")
    assert lexicon["THE"] == ("DH", "AH")
    assert "READ(2)" not in lexicon
    assert to_phones("hello don't READ the world", lexicon) == [
        "HH", "AH", "L", "OW", "D", "OW", "N", "T", "R", "IY", "D", "DH", "AH", "W", "ER", "L", "D"]


def test_lexicon_rejects_phones_outside_the_39_set_naming_line(tmp_path: Path):
    path = tmp_path / "bad.txt"
    path.write_text("CAT K AE1 T\nDOG D AX G\n")
    with pytest.raises(ValueError, match=r"bad\.txt:2: DOG: phone\(s\) AX"):
        read_lexicon(path)
    path.write_text("CAT\n")
    with pytest.raises(ValueError, match=r"bad\.txt:1: expected 'WORD PH1"):
        read_lexicon(path)


def test_phn_written_beside_manifest_exactly(tmp_path: Path, lexicon_file: Path):
    manifest = split(tmp_path / "data", ["HELLO WORLD", "THE WORLD", "DON'T READ"])
    summary = phonemize_manifest(manifest, read_lexicon(lexicon_file))
    assert summary.phones == tmp_path / "data" / "dev.phn"
    assert summary.phones.read_text() == "HH AH L OW W ER L D\nDH AH W ER L D\nD OW N T R IY D\n"
    assert (summary.utterances, summary.skipped) == (3, 0)


def test_missing_words_error_names_them(tmp_path: Path, lexicon_file: Path):
    manifest = split(tmp_path / "data", ["HELLO ZYZZYVA", "QUUX WORLD QUUX", "THE WORLD"])
    with pytest.raises(MissingWordsError, match=r"2 word\(s\) not in the lexicon: QUUX \(2x\), ZYZZYVA") as err:
        phonemize_manifest(manifest, read_lexicon(lexicon_file))
    assert dict(err.value.words) == {"QUUX": 2, "ZYZZYVA": 1}
    assert not (tmp_path / "data" / "dev.phn").exists()


def test_skip_missing_filters_manifest_and_labels_into_out_dir(tmp_path: Path, lexicon_file: Path):
    manifest = split(tmp_path / "data", ["HELLO ZYZZYVA", "THE WORLD", "QUUX", "DON'T READ"])
    lexicon = read_lexicon(lexicon_file)
    with pytest.raises(ValueError, match="2 utterance\\(s\\) would be dropped"):
        phonemize_manifest(manifest, lexicon, skip_missing=True)
    summary = phonemize_manifest(manifest, lexicon, out_dir=tmp_path / "out", skip_missing=True)
    assert (summary.utterances, summary.skipped) == (2, 2)
    kept = read_manifest(tmp_path / "out" / "dev.tsv")
    assert kept.paths == ["1.flac", "3.flac"] and kept.num_samples == [16001, 16003]
    assert kept.root == (tmp_path / "data").resolve()
    assert (tmp_path / "out" / "dev.wrd").read_text() == "THE WORLD\nDON'T READ\n"
    assert (tmp_path / "out" / "dev.ltr").read_text() == "T H E | W O R L D |\nD O N ' T | R E A D |\n"
    assert (tmp_path / "out" / "dev.phn").read_text() == "DH AH W ER L D\nD OW N T R IY D\n"
    assert read_manifest(manifest).paths == ["0.flac", "1.flac", "2.flac", "3.flac"]


def test_cli_reports_skips_and_errors(tmp_path: Path, lexicon_file: Path, capsys: pytest.CaptureFixture):
    manifest = split(tmp_path / "data", ["HELLO", "QUUX HELLO"])
    assert main(["phonemize", str(manifest), "--lexicon", str(lexicon_file)]) == 2
    assert "QUUX" in capsys.readouterr().err
    extra = tmp_path / "extra.txt"
    extra.write_text("QUUX K W AH1 K S\nHELLO HH IY0\n")
    assert main(["phonemize", str(manifest), "--lexicon", str(lexicon_file), "--lexicon", str(extra)]) == 0
    assert (tmp_path / "data" / "dev.phn").read_text() == "HH AH L OW\nK W AH K S HH AH L OW\n"
    assert main(["phonemize", str(manifest), "--lexicon", str(lexicon_file), "--skip-missing",
                 "--out", str(tmp_path / "out")]) == 0
    assert "skipped 1 utterance(s)" in capsys.readouterr().out
    assert (tmp_path / "out" / "dev.phn").read_text() == "HH AH L OW\n"
