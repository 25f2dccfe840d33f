"""eSpeak NG (from the espeakng-loader wheel) through ctypes; run as a script to synthesize a list.

Written by hand: no installed Python binding of eSpeak NG returns audio samples (phonemizer
uses it for phonemes only). Kept free of restorekit and torch imports because
``restorekit.datasets.demo`` runs this file in a fresh interpreter: eSpeak NG carries state
from one utterance to the next (pitch flutter position, among others), so the same list gives
the same samples only when synthesized from a fresh process. Voice variants (``en+f3``...)
are avoided: some read uninitialised state and differ run to run; pitch and range set the voice.

    python espeak.py OUT_DIR < jobs.json     # [[relative .wav path, text, voice, pitch, range], ...]
"""
from __future__ import annotations

import ctypes
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

AUDIO_OUTPUT_SYNCHRONOUS = 2
POS_CHARACTER = 1
RATE, PITCH, RANGE = 1, 3, 4
WORDS_PER_MINUTE = 150
CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class ESpeak:
    """One eSpeak NG engine in synchronous mode: ``synth(text, voice, pitch, range) -> int16 (time,)``."""

    def __init__(self) -> None:
        import espeakng_loader

        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                          ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        data = espeakng_loader.get_data_path().encode()
        self.sample_rate = int(self.lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data, 0))
        if self.sample_rate <= 0:
            raise RuntimeError(f"eSpeak NG failed to start with data at {data.decode()}; reinstall espeakng-loader")
        self._blocks: list[np.ndarray] = []
        self._callback = CALLBACK(self._collect)  # kept referenced: C holds the pointer
        self.lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, count: int, events) -> int:  # noqa: ANN001 - ctypes pointers
        if count > 0:
            self._blocks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        return 0  # 0 = go on synthesizing

    def synth(self, text: str, voice: str, pitch: int = 50, pitch_range: int = 50) -> np.ndarray:
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise RuntimeError(f"eSpeak NG has no voice {voice!r}; the espeakng-loader data may be incomplete")
        for param, value in ((RATE, WORDS_PER_MINUTE), (PITCH, pitch), (RANGE, pitch_range)):
            self.lib.espeak_SetParameter(param, int(value), 0)
        self._blocks = []
        raw = text.encode("utf-8")
        status = self.lib.espeak_Synth(raw, len(raw) + 1, 0, POS_CHARACTER, 0, 0, None, None)
        self.lib.espeak_Synchronize()
        if status != 0 or not self._blocks:
            raise RuntimeError(f"eSpeak NG could not synthesize {text!r} (status {status})")
        return np.concatenate(self._blocks)


def main(out_dir: str) -> int:
    jobs = json.load(sys.stdin)
    engine = ESpeak()
    for rel, text, voice, pitch, pitch_range in jobs:
        path = Path(out_dir) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, engine.synth(text, voice, pitch, pitch_range), engine.sample_rate, subtype="PCM_16")
    engine.lib.espeak_Terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
