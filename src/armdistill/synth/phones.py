"""Map eSpeak NG's en-us IPA units onto the 39-phone ARPAbet set (CMUdict, no stress) plus SIL."""

from __future__ import annotations

from armdistill.data.phones import ARPABET

SILENCE = "SIL"
INVENTORY: tuple[str, ...] = ARPABET + (SILENCE,)

_STRESS_MARKS = str.maketrans("", "", "ˈˌ")

# Compound units (r-coloured vowels, syllabic consonants) become several phones; the corpus
# splits their duration evenly. Flaps and glottal stops are allophones of T in CMUdict terms.
IPA_TO_ARPABET: dict[str, tuple[str, ...]] = {
    "": (SILENCE,),
    "ɑː": ("AA",), "ɑ": ("AA",), "ɒ": ("AA",),
    "æ": ("AE",), "a": ("AE",),
    "ʌ": ("AH",), "ə": ("AH",), "ɐ": ("AH",),
    "ɔː": ("AO",), "ɔ": ("AO",),
    "aʊ": ("AW",),
    "aɪ": ("AY",),
    "ɛ": ("EH",), "e": ("EH",),
    "ɚ": ("ER",), "ɜː": ("ER",), "ɜːɹ": ("ER",),
    "eɪ": ("EY",),
    "ɪ": ("IH",), "ᵻ": ("IH",),
    "i": ("IY",), "iː": ("IY",),
    "oʊ": ("OW",), "o": ("OW",),
    "ɔɪ": ("OY",),
    "ʊ": ("UH",),
    "uː": ("UW",), "u": ("UW",),
    "b": ("B",), "tʃ": ("CH",), "d": ("D",), "ð": ("DH",), "f": ("F",), "ɡ": ("G",), "g": ("G",),
    "h": ("HH",), "dʒ": ("JH",), "k": ("K",), "l": ("L",), "m": ("M",), "n": ("N",), "ŋ": ("NG",),
    "p": ("P",), "ɹ": ("R",), "r": ("R",), "s": ("S",), "ʃ": ("SH",), "t": ("T",), "θ": ("TH",),
    "v": ("V",), "w": ("W",), "j": ("Y",), "z": ("Z",), "ʒ": ("ZH",),
    "ɾ": ("T",), "ʔ": ("T",),
    "əl": ("AH", "L"), "n̩": ("AH", "N"), "l̩": ("AH", "L"), "m̩": ("AH", "M"),
    "ɑːɹ": ("AA", "R"), "ɔːɹ": ("AO", "R"), "oːɹ": ("AO", "R"), "ɛɹ": ("EH", "R"),
    "ɪɹ": ("IH", "R"), "iə": ("IY", "AH"), "ʊɹ": ("UH", "R"), "aɪə": ("AY", "AH"), "aɪɚ": ("AY", "ER"),
}


class UnknownPhoneError(ValueError):
    """An IPA unit outside the mapping; the utterance that produced it is rejected."""


def ipa_to_arpabet(ipa: str) -> tuple[str, ...]:
    """One eSpeak IPA unit (stress marks allowed) -> one or more ARPAbet phones, or ``("SIL",)``."""
    unit = ipa.translate(_STRESS_MARKS)
    try:
        return IPA_TO_ARPABET[unit]
    except KeyError:
        raise UnknownPhoneError(f"IPA unit {ipa!r} has no ARPAbet mapping") from None
