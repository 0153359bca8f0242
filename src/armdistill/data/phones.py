"""The phone set of phone-recognition labels: CMUdict's 39 ARPAbet phones, stress stripped.

Lexicon-based labels (``data/lexicon.py``) and the synthetic corpus (``synth/``) both use it.
"""

from __future__ import annotations

ARPABET: tuple[str, ...] = (
    "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH",
    "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH",
    "UH", "UW", "V", "W", "Y", "Z", "ZH",
)
