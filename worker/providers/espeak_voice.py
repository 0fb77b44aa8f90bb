"""eSpeak NG through ctypes on the espeakng-loader wheel (library and voice data inside; no system package).

The library keeps one global synthesiser per process, so this is a process-wide singleton behind a lock.
Synthesis is synchronous and fast (~1 ms per sentence), and the callback hands us the audio in chunks.
The caller bot in tests uses it too, to speak as a caller.
"""

from __future__ import annotations

import ctypes
import re
import threading
import espeakng_loader

AUDIO_OUTPUT_SYNCHRONOUS = 2
ESPEAK_CHARS_UTF8 = 1
ESPEAK_RATE = 1
POS_CHARACTER = 1
MAX_TEXT_CHARS = 4000  # one synthesis call; the TTS service feeds sentences, far shorter
MIN_RATE, MAX_RATE = 80, 450  # words per minute eSpeak accepts
VOICE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}(\+[A-Za-z0-9_-]{1,16})?$")  # "en-us", "en-gb+f3"; never a path

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class ESpeakVoice:
    """`synthesize(text)` -> 16-bit mono PCM chunks at `sample_rate` (22050 Hz)."""

    _instance: "ESpeakVoice | None" = None
    _instance_lock = threading.Lock()

    @classmethod
    def shared(cls) -> "ESpeakVoice":
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def __init__(self):
        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self._lib.espeak_Initialize.restype = ctypes.c_int
        self._lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self._lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self._lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self._lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                           ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        data_path = espeakng_loader.get_data_path()
        self.sample_rate = self._lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 100, data_path.encode(), 0)
        if self.sample_rate <= 0:
            raise RuntimeError(f"eSpeak NG failed to initialise with data at {data_path}")
        self._chunks: list[bytes] = []
        self._callback = _SYNTH_CALLBACK(self._on_audio)  # kept referenced: the library holds the pointer
        self._lib.espeak_SetSynthCallback(self._callback)
        self._lock = threading.Lock()
        self._voice: str | None = None
        self._rate: int | None = None

    def _on_audio(self, wav, num_samples, _events) -> int:
        if num_samples > 0:
            self._chunks.append(ctypes.string_at(wav, num_samples * 2))
        return 0

    def synthesize(self, text: str, *, voice: str = "en-us", rate: int = 175) -> list[bytes]:
        """The whole utterance as PCM chunks. Text is plain (no SSML, no phoneme input), bounded in length."""
        text = text[:MAX_TEXT_CHARS]
        encoded = text.encode("utf-8") + b"\0"
        with self._lock:
            if voice != self._voice:
                if not VOICE_NAME.match(voice):
                    raise ValueError(f"eSpeak voice {voice[:40]!r} is not a voice name (like en-us or en-gb)")
                if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
                    raise ValueError(f"eSpeak NG has no voice {voice!r}; use a name like en-us or en-gb")
                self._voice = voice
            rate = min(MAX_RATE, max(MIN_RATE, rate))
            if rate != self._rate:
                self._lib.espeak_SetParameter(ESPEAK_RATE, rate, 0)
                self._rate = rate
            self._chunks = []
            self._lib.espeak_Synth(encoded, len(encoded), 0, POS_CHARACTER, 0, ESPEAK_CHARS_UTF8, None, None)
            chunks, self._chunks = self._chunks, []
        return chunks

    def synthesize_pcm(self, text: str, **kwargs) -> bytes:
        return b"".join(self.synthesize(text, **kwargs))
