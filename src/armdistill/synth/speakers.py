"""The fixed speaker tables and their per-seed split into seen and held-out speakers.

A speaker is one (voice variant, rate, pitch, range, volume) tuple. Each variant gives two
speakers with different prosody; held-out speakers are whole variants, so a test voice's timbre
is never heard in training.

Two tables: ``demo`` (16 variants, moderate prosody; the shipped teacher's corpus) and ``wide``
(every variant of the bundled data, wide rate / pitch / range). The wide table's test speakers
are the fixed ``WIDE_TEST_VARIANTS``, none of which is in the demo table, so they are unseen by
any teacher trained on either table.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from armdistill.checks import check_choice

LANGUAGE = "en-us"
# Variants checked to exist in espeakng-loader's data and to synthesise without clipping.
VARIANTS: tuple[str, ...] = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8",
    "f1", "f2", "f3", "f4", "f5", "klatt3", "klatt4", "linda",
)
# Every variant of espeakng-loader's data; each was checked to give word and phone events that
# match the text at rate 120-230, pitch 10-90 and range 10-90.
ALL_VARIANTS: tuple[str, ...] = (
    "Alex", "Alicia", "Andrea", "Andy", "Annie", "AnxiousAndy", "Demonic", "Denis", "Diogo", "Gene",
    "Gene2", "Henrique", "Hugo", "Jacky", "Lee", "Marco", "Mario", "Michael", "Mike", "Mr serious",
    "Nguyen", "Reed", "RicishayMax", "RicishayMax2", "RicishayMax3", "Storm", "Tweaky", "UniRobot",
    "adam", "anika", "anikaRobot", "announcer", "antonio", "aunty", "belinda", "benjamin", "boris",
    "caleb", "croak", "david", "ed", "edward", "edward2", "f1", "f2", "f3", "f4", "f5", "fast",
    "grandma", "grandpa", "gustave", "ian", "iven", "iven2", "iven3", "iven4", "john", "kaukovalta",
    "klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6", "linda", "m1", "m2", "m3", "m4", "m5",
    "m6", "m7", "m8", "marcelo", "max", "michel", "miguel", "mike2", "norbert", "pablo", "paul",
    "pedro", "quincy", "rob", "robert", "robosoft", "robosoft2", "robosoft3", "robosoft4", "robosoft5",
    "robosoft6", "robosoft7", "robosoft8", "sandro", "shelby", "steph", "steph2", "steph3", "travis",
    "victor", "whisper", "whisperf", "zac",
)
WIDE_TEST_VARIANTS: tuple[str, ...] = (
    "Annie", "Michael", "aunty", "benjamin", "grandma", "quincy", "steph2", "travis",
)
TEST_VARIANTS = 3
KS_VALID_VARIANTS = 2
SpeakerTable = Literal["demo", "wide"]
SPEAKER_TABLES: tuple[str, ...] = ("demo", "wide")


@dataclass(frozen=True)
class Speaker:
    id: str
    variant: str
    rate: int  # words per minute
    pitch: int  # 0-100
    pitch_range: int  # 0-100
    volume: int = 100  # eSpeak amplitude 0-200; the wide table speaks at 60 so loud variants do not clip

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


def _wide_table() -> tuple[Speaker, ...]:
    rng = np.random.default_rng(20230821)
    return tuple(
        Speaker(
            id=f"wide{k:03d}",
            variant=ALL_VARIANTS[k % len(ALL_VARIANTS)],
            rate=int(rng.integers(110, 241)),
            pitch=int(rng.integers(5, 96)),
            pitch_range=int(rng.integers(5, 96)),
            volume=60,
        )
        for k in range(2 * len(ALL_VARIANTS))
    )


SPEAKERS: tuple[Speaker, ...] = _speaker_table()
WIDE_SPEAKERS: tuple[Speaker, ...] = _wide_table()


def speaker_table(table: SpeakerTable) -> tuple[Speaker, ...]:
    check_choice("speakers", table, SPEAKER_TABLES, error=ValueError)
    return SPEAKERS if table == "demo" else WIDE_SPEAKERS


def split_speakers(seed: int, table: SpeakerTable = "demo") -> dict[str, list[Speaker]]:
    """``{"seen": ..., "test": ..., "ks_valid": ...}``; seen speakers are in a seed-shuffled order.

    ``test`` speakers (whole variants: seed-chosen for ``demo``, ``WIDE_TEST_VARIANTS`` for
    ``wide``) never appear in any training split; ``ks_valid`` speakers are seen speakers that
    the keyword-spotting set keeps out of its own training split.
    """
    speakers = speaker_table(table)
    variants = VARIANTS if table == "demo" else ALL_VARIANTS
    rng = np.random.default_rng([seed, 1])
    order = [variants[i] for i in rng.permutation(len(variants))]
    test_variants = set(order[:TEST_VARIANTS] if table == "demo" else WIDE_TEST_VARIANTS)
    ks_valid_variants = set([v for v in order if v not in test_variants][:KS_VALID_VARIANTS])
    seen = [speakers[i] for i in rng.permutation(len(speakers)) if speakers[i].variant not in test_variants]
    return {
        "seen": seen,
        "test": [s for s in speakers if s.variant in test_variants],
        "ks_valid": [s for s in seen if s.variant in ks_valid_variants],
    }
