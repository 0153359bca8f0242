"""The fixed speaker table and its per-seed split into seen and held-out speakers.

A speaker is one (voice variant, rate, pitch, range) tuple. Each variant gives two speakers with
different prosody; held-out speakers are whole variants, so a test voice's timbre is never heard
in training.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

LANGUAGE = "en-us"
# Variants checked to exist in espeakng-loader's data and to synthesise without clipping.
VARIANTS: tuple[str, ...] = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8",
    "f1", "f2", "f3", "f4", "f5", "klatt3", "klatt4", "linda",
)
TEST_VARIANTS = 3
KS_VALID_VARIANTS = 2


@dataclass(frozen=True)
class Speaker:
    id: str
    variant: str
    rate: int  # words per minute
    pitch: int  # 0-100
    pitch_range: int  # 0-100

    def to_dict(self) -> dict:
        return asdict(self)


def _speaker_table() -> tuple[Speaker, ...]:
    # A constant generator: the table is the same for every corpus seed.
    rng = np.random.default_rng(20230820)
    speakers = []
    for k in range(2 * len(VARIANTS)):
        speakers.append(
            Speaker(
                id=f"spk{k:02d}",
                variant=VARIANTS[k % len(VARIANTS)],
                rate=int(rng.integers(140, 201)),
                pitch=int(rng.integers(25, 76)),
                pitch_range=int(rng.integers(20, 81)),
            )
        )
    return tuple(speakers)


SPEAKERS: tuple[Speaker, ...] = _speaker_table()


def split_speakers(seed: int) -> dict[str, list[Speaker]]:
    """``{"seen": ..., "test": ..., "ks_valid": ...}``; seen speakers are in a seed-shuffled order.

    ``test`` speakers (whole variants) never appear in any training split; ``ks_valid`` speakers
    are seen speakers that the keyword-spotting set keeps out of its own training split.
    """
    rng = np.random.default_rng([seed, 1])
    order = [VARIANTS[i] for i in rng.permutation(len(VARIANTS))]
    test_variants = set(order[:TEST_VARIANTS])
    ks_valid_variants = set(order[TEST_VARIANTS : TEST_VARIANTS + KS_VALID_VARIANTS])
    seen = [SPEAKERS[i] for i in rng.permutation(len(SPEAKERS)) if SPEAKERS[i].variant not in test_variants]
    return {
        "seen": seen,
        "test": [s for s in SPEAKERS if s.variant in test_variants],
        "ks_valid": [s for s in seen if s.variant in ks_valid_variants],
    }
