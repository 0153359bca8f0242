"""ctypes binding to the eSpeak NG library bundled by the pip package ``espeakng-loader``.

eSpeak NG is GPL-3.0, so it is an optional extra: the package is imported lazily, only when a
synthesiser is created. The library keeps global state and is not thread-safe, so each process
holds at most one :class:`Synthesizer`; the corpus builder shards work across processes.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from armdistill.errors import UserError

INSTALL_HINT = "speech synthesis needs eSpeak NG: pip install 'armdistill[synth]'"

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS = 0x0001
_INIT_PHONEME_IPA = 0x0002
_POS_CHARACTER = 1
_CHARS_UTF8 = 1

_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_PHONEME = 7

_PARAM_RATE = 1
_PARAM_VOLUME = 2
_PARAM_PITCH = 3
_PARAM_RANGE = 4


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    # Mirrors espeak_EVENT in speak_lib.h; ``sample`` is the event's position in output samples.
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass(frozen=True)
class WordEvent:
    """A word as the synthesiser read it: 1-based character offset and length in the text."""

    index: int
    text_position: int
    length: int
    sample: int


@dataclass(frozen=True)
class PhonemeEvent:
    """A phoneme (IPA, stress marks included; empty for a pause) starting at ``sample``."""

    ipa: str
    text_position: int
    sample: int


@dataclass
class Synthesis:
    """Audio ``[samples]`` float32 in [-1, 1] at ``sample_rate`` and the events that produced it."""

    audio: np.ndarray
    sample_rate: int
    words: list[WordEvent]
    phonemes: list[PhonemeEvent]


class EspeakUnavailableError(UserError, RuntimeError):
    """The optional eSpeak NG dependency is missing or incomplete."""


def _paths() -> tuple[Path, Path]:
    try:
        import espeakng_loader
    except ImportError as err:
        raise EspeakUnavailableError(INSTALL_HINT) from err
    lib_path = Path(espeakng_loader.get_library_path())
    data = lib_path.parent / "espeak-ng-data"
    for path in (lib_path, data):
        if not path.exists():
            raise EspeakUnavailableError(f"{path}: missing from the espeakng-loader package; {INSTALL_HINT}")
    return lib_path, data


def require_espeak() -> None:
    """Raise :class:`EspeakUnavailableError` with the install hint unless eSpeak NG can be loaded."""
    _paths()


def data_path() -> Path:
    """Directory of the bundled ``espeak-ng-data``."""
    return _paths()[1]


def available_variants() -> set[str]:
    """Voice variants present in the bundled data (unknown ones are accepted silently by eSpeak)."""
    variants = data_path() / "voices" / "!v"
    return {p.name for p in variants.iterdir() if p.is_file()}


class Synthesizer:
    """The process's eSpeak NG instance, reporting per-word and per-phoneme events (IPA)."""

    _instance_created = False

    def __init__(self) -> None:
        if Synthesizer._instance_created:
            raise RuntimeError("eSpeak NG keeps global state: create one Synthesizer per process")
        lib_path, self._data = _paths()
        self._lib = ctypes.CDLL(str(lib_path))
        self._lib.espeak_Initialize.restype = ctypes.c_int
        rate = self._lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, str(self._data).encode(), _INIT_PHONEME_EVENTS | _INIT_PHONEME_IPA
        )
        if rate <= 0:
            raise RuntimeError(f"eSpeak NG failed to initialise with data at {self._data}")
        self.sample_rate = int(rate)
        self._variants = available_variants()
        self._chunks: list[bytes] = []
        self._words: list[WordEvent] = []
        self._phonemes: list[PhonemeEvent] = []
        # Keep a reference: ctypes frees the trampoline when the Python object dies.
        self._callback = _CALLBACK(self._on_audio)
        self._lib.espeak_SetSynthCallback(self._callback)
        Synthesizer._instance_created = True

    def _on_audio(self, wav, num_samples: int, events) -> int:
        if num_samples > 0:
            self._chunks.append(ctypes.string_at(wav, num_samples * 2))
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type == _EVENT_WORD:
                self._words.append(WordEvent(ev.id.number, ev.text_position, ev.length, ev.sample))
            elif ev.type == _EVENT_PHONEME:
                ipa = ev.id.string.decode("utf-8", errors="replace")
                self._phonemes.append(PhonemeEvent(ipa, ev.text_position, ev.sample))
            i += 1
        return 0

    def set_voice(
        self, language: str, variant: str, rate: int, pitch: int, pitch_range: int, volume: int = 100
    ) -> None:
        """Select ``language+variant``, the prosody (rate in words/minute, pitch and range 0-100)
        and the amplitude (0-200, eSpeak's default 100)."""
        if variant not in self._variants:
            raise ValueError(f"voice variant {variant!r} is not in {self._data / 'voices' / '!v'}")
        if self._lib.espeak_SetVoiceByName(f"{language}+{variant}".encode()) != 0:
            raise ValueError(f"eSpeak NG rejected voice {language}+{variant}")
        settings = ((_PARAM_RATE, rate), (_PARAM_PITCH, pitch), (_PARAM_RANGE, pitch_range), (_PARAM_VOLUME, volume))
        for param, value in settings:
            if self._lib.espeak_SetParameter(param, int(value), 0) != 0:
                raise ValueError(f"eSpeak NG rejected parameter {param}={value}")

    def synthesize(self, text: str) -> Synthesis:
        """Speak ``text`` with the current voice; blocks until all audio has been produced."""
        self._chunks, self._words, self._phonemes = [], [], []
        data = text.encode("utf-8")
        status = self._lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if status != 0:
            raise RuntimeError(f"eSpeak NG failed (status {status}) on {text!r}")
        self._lib.espeak_Synchronize()
        pcm = np.frombuffer(b"".join(self._chunks), dtype=np.int16)
        return Synthesis(pcm.astype(np.float32) / 32768.0, self.sample_rate, self._words, self._phonemes)
