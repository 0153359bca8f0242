"""Synthetic English speech from eSpeak NG (optional extra ``armdistill[synth]``, GPL-3.0).

The eSpeak NG library is loaded only when audio is synthesised, so importing this package works
without it.
"""

from armdistill.synth.alignments import build_alignment, frame_labels, spoken_phones
from armdistill.synth.corpus import generate, load_meta, plan_ks, plan_speech
from armdistill.synth.phones import INVENTORY, SILENCE, ipa_to_arpabet

__all__ = [
    "INVENTORY",
    "SILENCE",
    "build_alignment",
    "frame_labels",
    "generate",
    "ipa_to_arpabet",
    "load_meta",
    "plan_ks",
    "plan_speech",
    "spoken_phones",
]
