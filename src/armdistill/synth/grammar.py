"""The project's word list and sentence grammar for synthetic speech.

Words are plain lower-case English words that eSpeak NG reads as exactly one word each (no
numerals, abbreviations or letters, which it expands). The list covers all 39 phones, the rare
ZH (measure, vision, usual) and OY (boy, coin, voice) included.
"""

from __future__ import annotations

import numpy as np

NAMES = (
    "anna", "ben", "carol", "david", "emma", "frank", "grace", "henry", "julia", "kevin",
    "laura", "martin", "nora", "oscar", "paula", "roger", "sarah", "thomas", "victor", "wendy",
)
NOUNS = (
    "apple", "garden", "river", "window", "teacher", "doctor", "farmer", "kitten", "puppy", "horse",
    "rabbit", "bottle", "basket", "blanket", "bridge", "candle", "castle", "chair", "cheese", "church",
    "cloud", "coin", "corner", "dinner", "dragon", "engine", "feather", "forest", "hammer", "jacket",
    "kettle", "ladder", "lemon", "letter", "market", "mirror", "monkey", "mountain", "needle", "orange",
    "pencil", "pillow", "pocket", "rocket", "saddle", "shadow", "shovel", "silver", "sugar", "table",
    "thread", "ticket", "tiger", "tower", "treasure", "turtle", "valley", "village", "wagon", "whistle",
    "boy", "toy", "voice", "noise", "oil", "measure", "vision", "garage", "beach", "book",
    "boat", "cake", "door", "fish", "goat", "house", "judge", "king", "lamp", "moon",
    "nest", "path", "queen", "ring", "ship", "star", "thumb", "wheel", "yard", "zoo",
)
ADJECTIVES = (
    "big", "small", "old", "young", "happy", "quiet", "noisy", "yellow", "purple", "golden",
    "heavy", "gentle", "clever", "lazy", "busy", "shiny", "tiny", "huge", "warm", "cold",
    "bright", "dark", "soft", "rough", "smooth", "thick", "thin", "loyal", "usual", "strange",
    "brave", "careful", "funny", "hungry", "sleepy", "wooden", "empty", "pleasant", "curious", "modern",
)
VERBS_PAST = (
    "found", "saw", "took", "moved", "washed", "painted", "carried", "dropped", "pushed", "pulled",
    "liked", "watched", "opened", "closed", "cleaned", "fixed", "bought", "sold", "brought", "lifted",
    "kicked", "counted", "touched", "chased", "caught", "held", "wanted", "needed", "joined", "enjoyed",
)
VERBS_BASE = (
    "find", "see", "take", "move", "wash", "paint", "carry", "drop", "push", "pull",
    "like", "watch", "open", "close", "clean", "fix", "buy", "sell", "bring", "lift",
    "kick", "count", "touch", "chase", "catch", "hold", "want", "need", "join", "enjoy",
)
DETERMINERS = ("the", "a", "my", "your", "his", "her", "our", "their", "this", "that", "every", "some")
PREPOSITIONS = ("in", "on", "near", "under", "behind", "beside", "above", "inside", "through", "across", "with")
ADVERBS = ("slowly", "quickly", "quietly", "always", "never", "often", "today", "yesterday", "again", "later")
AUXILIARIES = ("will", "can", "should", "might", "must", "could", "would")

# Slot names map to word classes; each template is one sentence pattern.
WORD_CLASSES: dict[str, tuple[str, ...]] = {
    "NAME": NAMES,
    "NOUN": NOUNS,
    "ADJ": ADJECTIVES,
    "VPAST": VERBS_PAST,
    "VBASE": VERBS_BASE,
    "DET": DETERMINERS,
    "PREP": PREPOSITIONS,
    "ADV": ADVERBS,
    "AUX": AUXILIARIES,
}
TEMPLATES: tuple[tuple[str, ...], ...] = (
    ("NAME", "VPAST", "DET", "ADJ", "NOUN"),
    ("NAME", "VPAST", "DET", "NOUN", "PREP", "DET", "NOUN"),
    ("DET", "ADJ", "NOUN", "VPAST", "DET", "NOUN", "ADV"),
    ("DET", "NOUN", "AUX", "VBASE", "DET", "ADJ", "NOUN"),
    ("NAME", "AUX", "ADV", "VBASE", "DET", "NOUN", "PREP", "DET", "ADJ", "NOUN"),
    ("ADV", "NAME", "VPAST", "DET", "ADJ", "NOUN", "PREP", "DET", "NOUN"),
    ("DET", "ADJ", "NOUN", "PREP", "DET", "NOUN", "VPAST", "NAME"),
    ("NAME", "AND", "NAME", "VPAST", "DET", "ADJ", "NOUN", "ADV"),
)
_LITERALS = {"AND": "and"}

KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN_LABEL = "_unknown_"


def vocabulary() -> list[str]:
    """Every word the grammar can produce, sorted."""
    words = set(_LITERALS.values()).union(*WORD_CLASSES.values())
    return sorted(words)


def sentence(rng: np.random.Generator) -> list[str]:
    """One sentence as a list of words, drawn from a random template."""
    template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
    words = []
    for slot in template:
        if slot in _LITERALS:
            words.append(_LITERALS[slot])
        else:
            options = WORD_CLASSES[slot]
            words.append(options[int(rng.integers(len(options)))])
    return words


def unknown_words() -> list[str]:
    """Vocabulary words usable as the keyword-spotting "unknown" class (no keyword among them)."""
    return [w for w in vocabulary() if w not in KEYWORDS]
