"""Phonemes: eSpeak NG IPA and the 178-symbol table text encoders and datasets share.

``PHONEME_SYMBOLS`` is PL-BERT's table (the one StyleTTS 2's ``text_utils`` uses): id 0 is the
pad ``$``, then punctuation and the space, the ASCII letters, and the IPA letters and marks
eSpeak NG writes. A released PL-BERT checkpoint's embedding rows follow this order, so the
ids must never be reordered.

``phonemize`` gives eSpeak NG's IPA with stress marks (``ˈ ˌ``) and length marks, words
separated by one space, with the text's punctuation kept in place (as phonemizer's
``preserve_punctuation=True``, which PL-BERT was trained with): ``"hello world"`` ->
``"həlˈoʊ wˈɜːld"``. ``phoneme_ids`` maps that string to ids; symbols outside the table are
skipped (a warning per distinct symbol, and counted into ``skipped`` when given), never an error.

Core level: no torch, no datasets import.
"""
from __future__ import annotations

import ctypes
import functools
import os
import re
import threading
import warnings
from collections import Counter

from restorekit.errors import ConfigError

_PAD = "$"
_PUNCTUATION = ';:,.!?¡¿—…"«»“” '
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_LETTERS_IPA = ("ɑɐɒæɓʙβɔɕçɗɖðʤəɘɚɛɜɝɞɟʄɡɠɢʛɦɧħɥʜɨɪʝɭɬɫɮʟɱɯɰŋɳɲɴøɵɸθœɶʘɹɺɾɻʀʁɽʂʃʈʧʉʊʋⱱʌɣɤʍχʎʏʑʐʒʔʡʕʢǀǁǂǃ"
                "ˈˌːˑʼʴʰʱʲʷˠˤ˞↓↑→↗↘'̩'ᵻ")
# The released table lists "'" twice; the second occurrence's id (the last) is the one its dict keeps.
PHONEME_SYMBOLS: tuple[str, ...] = (_PAD, *_PUNCTUATION, *_LETTERS, *_LETTERS_IPA)
PAD_ID = 0
SYMBOL_TO_ID: dict[str, int] = {s: i for i, s in enumerate(PHONEME_SYMBOLS)}
SPACE_ID = SYMBOL_TO_ID[" "]
VOCAB_SIZE = len(PHONEME_SYMBOLS)
assert VOCAB_SIZE == 178, f"PL-BERT's table has 178 symbols, this one {VOCAB_SIZE}"

_PUNCT_RUN = re.compile(r"(\s*[;:,.!?¡¿—…\"«»“”]+\s*)")
_LANGUAGE_FLAG = re.compile(r"\([a-z][a-z0-9-]*\)")  # eSpeak's "(fr)" switch markers inside IPA
_ESPEAK_CHARS_UTF8 = 1
_PHONEMES_IPA = 0x02
_INIT_DONT_EXIT = 0x8000  # return an error instead of exit() when the voice data is missing


def phoneme_ids(ipa: str, skipped: Counter | None = None) -> list[int]:
    """Ids in ``PHONEME_SYMBOLS`` of each character of ``ipa`` (no start/end tokens added).

    A character outside the table is left out: it warns once per distinct symbol and, when
    ``skipped`` is given, is counted there (``skipped[symbol] += 1``).
    """
    ids = []
    for ch in ipa:
        i = SYMBOL_TO_ID.get(ch)
        if i is None:
            if skipped is not None:
                skipped[ch] += 1
            warnings.warn(f"phoneme_ids: symbol {ch!r} (U+{ord(ch):04X}) is not in PHONEME_SYMBOLS; skipped",
                          stacklevel=2)
            continue
        ids.append(i)
    return ids


def ids_to_phonemes(ids: list[int]) -> str:
    """The IPA string of ``ids`` (pads dropped): the inverse of ``phoneme_ids`` on table symbols."""
    return "".join(PHONEME_SYMBOLS[i] for i in ids if i != PAD_ID)


def phonemize(texts: list[str], language: str = "en-us") -> list[str]:
    """eSpeak NG IPA of each text (stress marks kept, words split by spaces, punctuation kept).

    ``language`` is an eSpeak NG voice name (``en-us``, ``en-gb``, ``de``, ...). Results are
    cached per (text, language) in each process.
    """
    return [_phonemize_one(t, language) for t in texts]


@functools.lru_cache(maxsize=65536)
def _phonemize_one(text: str, language: str) -> str:
    # Punctuation is dropped by eSpeak (it ends a clause), so each stretch between marks is
    # phonemized on its own and the marks put back, as phonemizer's preserve_punctuation does.
    out = ""
    for piece in _PUNCT_RUN.split(text):
        if _PUNCT_RUN.fullmatch(piece):
            out = out.rstrip() + piece.strip() + " "
        elif piece.strip():
            ipa = _engine().phonemes(piece.strip(), language)
            out += ipa + " " if ipa else ""
    return out.strip()


class _Espeak:
    """eSpeak NG's library (from espeakng-loader) through ctypes, in IPA phoneme mode.

    Written by hand: phonemizer (the usual binding) is not a dependency, and this is one call.
    eSpeak NG is not thread-safe, so calls hold a lock; a forked DataLoader worker opens its
    own engine (the pid is checked), as the C library's state is not shared across processes.
    """

    def __init__(self) -> None:
        import espeakng_loader

        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
        self.lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        data = espeakng_loader.get_data_path()
        if self.lib.espeak_Initialize(2, 0, data.encode(), _INIT_DONT_EXIT) <= 0:
            raise RuntimeError(f"eSpeak NG failed to start with data at {data}; reinstall espeakng-loader")
        self.lock = threading.Lock()
        self.voice: str | None = None
        self.pid = os.getpid()

    def phonemes(self, text: str, language: str) -> str:
        with self.lock:
            self._set_voice(language)
            buf = ctypes.create_string_buffer(text.encode("utf-8"))
            ptr = ctypes.c_void_p(ctypes.addressof(buf))
            clauses = []
            # One call returns one clause and moves ptr on; NULL once the text is used up.
            while ptr.value:
                out = self.lib.espeak_TextToPhonemes(ctypes.byref(ptr), _ESPEAK_CHARS_UTF8, _PHONEMES_IPA)
                clauses.append((out or b"").decode("utf-8").strip())
        return _LANGUAGE_FLAG.sub("", " ".join(c for c in clauses if c)).strip()

    def _set_voice(self, language: str) -> None:
        if language != self.voice:
            if self.lib.espeak_SetVoiceByName(language.encode()) != 0:
                raise ConfigError(f"phonemize: eSpeak NG has no voice {language!r}; use an eSpeak NG language "
                                  "name such as en-us, en-gb, de, fr-fr")
            self.voice = language


_ENGINE: list[_Espeak] = []  # created on first use (no import-time side effects), one per process


def _engine() -> _Espeak:
    if not _ENGINE or _ENGINE[0].pid != os.getpid():
        _ENGINE[:] = [_Espeak()]
    return _ENGINE[0]
