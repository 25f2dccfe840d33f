"""``demo_speech``: a small corpus of intelligible English speech made offline with eSpeak NG.

The ``espeakng-loader`` wheel ships the eSpeak NG library and its voice data, so the corpus
needs no download: 40 short sentences, 4 voices, synthesized once (about a second) and cached
under ``$RESTOREKIT_DEMO_DIR`` or ``$XDG_CACHE_HOME/restorekit/demo_speech`` (default
``~/.cache/...``). Output is deterministic: same text, voice and rate give the same samples.
eSpeak NG is a formant synthesizer (22.05 kHz): robotic, but real phonetics and prosody.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from restorekit.audio import save
from restorekit.datasets import DATASETS
from restorekit.datasets.degraded import DegradedSpeech
from restorekit.datasets.manifest import write_metadata
from restorekit.errors import ConfigError, DataError

VERSION = "v1"  # bump when sentences, voices or settings change: the cache is keyed by it
SPLITS = ("train", "valid")
VOICES = {"spk1": "en-us", "spk2": "en-us+f3", "spk3": "en", "spk4": "en+f4"}
WORDS_PER_MINUTE = 150
SENTENCES = (
    "The kettle was still warm when we came home.",
    "Bring two pencils and a sheet of paper.",
    "A gentle wind moved across the open field.",
    "She painted the old fence a bright shade of blue.",
    "Our train leaves at a quarter past nine.",
    "The baker sold every loaf before noon.",
    "Please close the window before the rain starts.",
    "He found a silver coin under the wooden bench.",
    "The children laughed at the clever puppet show.",
    "Fresh snow covered the quiet mountain road.",
    "My brother keeps his bicycle in the garden shed.",
    "The library opens early on Saturday morning.",
    "A small boat drifted slowly toward the harbor.",
    "We planted tomatoes along the sunny wall.",
    "The teacher read the story in a calm voice.",
    "Turn left at the corner and walk two blocks.",
    "Thick clouds gathered over the distant hills.",
    "The dog waited patiently by the front door.",
    "Add a pinch of salt to the boiling water.",
    "The old clock in the hall struck seven.",
    "They carried the heavy boxes up the stairs.",
    "A bright lamp lit the corner of the room.",
    "The river runs fast after the spring rain.",
    "Write your name at the top of the page.",
    "The market was busy with people and music.",
    "He tuned the guitar before the concert began.",
    "Soft music played in the empty cafe.",
    "The farmer counted the sheep in the pen.",
    "Keep the milk cold and drink it soon.",
    "A flock of birds flew over the lake.",
    "She wrapped the gift in plain brown paper.",
    "The bus was late because of the heavy traffic.",
    "We watched the sunset from the tall tower.",
    "The cat slept all day on the warm rug.",
    "Measure the board twice and cut it once.",
    "The museum shows paintings from many countries.",
    "Light the candle and open the old book.",
    "The crowd cheered when the team scored.",
    "Please hand me the red cup on the shelf.",
    "Every morning he walks along the beach.",
)
_SYNTH_LOCK = threading.Lock()  # eSpeak NG keeps global state: one synthesis at a time per process


def demo_cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the corpus lives: the argument, else $RESTOREKIT_DEMO_DIR, else the XDG cache."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get("RESTOREKIT_DEMO_DIR"):
        return Path(os.environ["RESTOREKIT_DEMO_DIR"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg).expanduser() / "restorekit" / "demo_speech"


def demo_corpus_dir(split: str = "train", cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder of one split (with its metadata.csv), synthesized on first use."""
    if split not in SPLITS:
        raise ConfigError(f"demo_speech: split must be one of {', '.join(SPLITS)}, got {split!r}")
    corpus = demo_cache_root(cache_dir) / VERSION
    if not (corpus / "valid" / "metadata.csv").is_file():
        build_demo_corpus(corpus)
    return corpus / split


def utterances() -> list[tuple[str, str, str, str]]:
    """(split, speaker, file stem, text): 10 sentences per voice, the last 2 of each for validation."""
    out = []
    for v, speaker in enumerate(VOICES):
        for k in range(10):
            split = "valid" if k >= 8 else "train"
            out.append((split, speaker, f"{speaker}_{k + 1:03d}", SENTENCES[v * 10 + k]))
    return out


def build_demo_corpus(corpus: Path) -> Path:
    """Synthesize every utterance into a temporary folder, index it, and rename it into place."""
    corpus.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=corpus.parent, prefix=f".{corpus.name}."))
    try:
        with _SYNTH_LOCK:
            engine = ESpeak()
            try:
                for split, speaker, stem, text in utterances():
                    wave = engine.synth(text, VOICES[speaker])
                    save(tmp / split / speaker / f"{stem}.wav", wave, engine.sample_rate)
            finally:
                engine.close()
        (tmp / "SENTENCES.txt").write_text("".join(f"{s}/{p}/{n}.wav\t{t}\n" for s, p, n, t in utterances()))
        for split in SPLITS:
            write_metadata(tmp / split, workers=2)
        _publish(tmp, corpus)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return corpus


def _publish(tmp: Path, corpus: Path) -> None:
    # Another process may have finished first; its copy is identical (deterministic), keep it.
    try:
        os.rename(tmp, corpus)
    except OSError:
        if not (corpus / "valid" / "metadata.csv").is_file():
            raise


class ESpeak:
    """The eSpeak NG C library from the espeakng-loader wheel, driven through ctypes.

    Written by hand: no installed Python binding of eSpeak NG returns audio samples (phonemizer
    uses it for phonemes only). Synchronous mode: the callback receives int16 blocks.
    """

    AUDIO_OUTPUT_SYNCHRONOUS = 2
    POS_CHARACTER = 1
    RATE, PITCH = 1, 3
    CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as exc:
            raise DataError("demo_speech needs the espeakng-loader package: pip install espeakng-loader") from exc
        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                          ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        data = espeakng_loader.get_data_path().encode()
        self.sample_rate = int(self.lib.espeak_Initialize(self.AUDIO_OUTPUT_SYNCHRONOUS, 0, data, 0))
        if self.sample_rate <= 0:
            raise DataError(f"eSpeak NG failed to start (data at {data.decode()}); reinstall espeakng-loader")
        self._blocks: list[np.ndarray] = []
        self._callback = self.CALLBACK(self._collect)  # kept referenced: C holds the pointer
        self.lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav: Any, count: int, events: Any) -> int:
        if count > 0:
            self._blocks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        return 0  # 0 = continue synthesis

    def synth(self, text: str, voice: str) -> np.ndarray:
        """``text`` spoken by ``voice`` as float32 (time,) at ``self.sample_rate`` Hz."""
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise DataError(f"eSpeak NG has no voice {voice!r}; the espeakng-loader data may be incomplete")
        self.lib.espeak_SetParameter(self.RATE, WORDS_PER_MINUTE, 0)
        self._blocks = []
        raw = text.encode("utf-8")
        status = self.lib.espeak_Synth(raw, len(raw) + 1, 0, self.POS_CHARACTER, 0, 0, None, None)
        self.lib.espeak_Synchronize()
        if status != 0 or not self._blocks:
            raise DataError(f"eSpeak NG could not synthesize {text!r} (status {status})")
        return (np.concatenate(self._blocks).astype(np.float32) / 32768.0).astype(np.float32)

    def close(self) -> None:
        self.lib.espeak_Terminate()


@DATASETS.register("demo_speech")
def demo_speech(sample_rate: int, split: str = "train", segment_seconds: float | None = 2.0,
                degradations: dict | None = None, short: str = "pad", seed: int = 0,
                cache_dir: str | None = None) -> DegradedSpeech:
    """The embedded eSpeak NG demo corpus (32 train / 8 valid utterances) as degraded_speech items.

    Synthesized on first use and cached (see ``cache_dir`` / $RESTOREKIT_DEMO_DIR). ``split``
    valid is deterministic per index. Items: clean/degraded float32 (time,) at sample_rate Hz.
    """
    root = demo_corpus_dir(split, cache_dir)
    return DegradedSpeech(roots=[str(root)], sample_rate=sample_rate, degradations=degradations,
                          segment_seconds=segment_seconds, short=short, validation=(split == "valid"), seed=seed)
