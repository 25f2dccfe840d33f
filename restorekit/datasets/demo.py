"""``demo_speech``: a small corpus of intelligible English speech made offline with eSpeak NG.

The ``espeakng-loader`` wheel ships the eSpeak NG library and its voice data, so the corpus
needs no download: 56 short sentences, 8 voices, synthesized once (a few seconds) and cached
under ``$RESTOREKIT_DEMO_DIR`` or ``$XDG_CACHE_HOME/restorekit/demo_speech`` (default
``~/.cache/...``). Output is deterministic: same text, voice and rate give the same samples.
eSpeak NG is a formant synthesizer (22.05 kHz): robotic, but real phonetics and prosody.

The splits share neither sentences nor voices, so a score on ``valid`` measures a model on speech
it has not heard in any form: ``train`` is 32 utterances (8 sentences each from 4 voices, two
American and two British English, a low and a high voice each), ``valid`` 24 utterances (6
sentences each from 4 other voices: Scottish, Caribbean, received-pronunciation and New York
English, pitches in between).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from restorekit.datasets import DATASETS
from restorekit.datasets.degraded import DegradedSpeech
from restorekit.datasets.manifest import write_metadata
from restorekit.errors import ConfigError, DataError

VERSION = "v3"  # bump when sentences, voices or settings change: the cache is keyed by it
SPLITS = ("train", "valid")
# speaker -> (eSpeak NG voice, pitch 0-100, pitch range 0-100). Training: two accents, a low and a
# high voice each. Validation: four other accents, none of them heard in training.
TRAIN_VOICES = {"spk1": ("en-us", 40, 60), "spk2": ("en-us", 75, 70), "spk3": ("en", 35, 55), "spk4": ("en", 70, 70)}
VALID_VOICES = {"spk5": ("en-gb-scotland", 50, 60), "spk6": ("en-029", 62, 65), "spk7": ("en-gb-x-rp", 45, 50),
                "spk8": ("en-us-nyc", 58, 75)}
VOICES = {**TRAIN_VOICES, **VALID_VOICES}
TRAIN_PER_VOICE, VALID_PER_VOICE = 8, 6
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
    "The pilot checked the map before the flight.",
    "A cold glass of water helps on a hot day.",
    "The workers painted lines on the new road.",
    "Her grandmother baked bread every Sunday.",
    "The phone rang twice and then stopped.",
    "A yellow kite rose high above the park.",
    "The nurse smiled and opened the heavy door.",
    "Put the spare key under the flower pot.",
    "The students cleaned the lab after class.",
    "Rain tapped softly against the kitchen window.",
    "The fisherman mended his net on the pier.",
    "We shared a pot of tea by the fire.",
    "The engine made a strange noise on the hill.",
    "She counted the coins and closed her purse.",
    "The garden gate creaked in the evening breeze.",
    "A tall ladder leaned against the barn.",
)


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
    """(split, speaker, file stem, text): every sentence once, by one voice; no voice in both splits.

    Training takes 8 sentences per training voice (32), validation 6 per validation voice (24);
    the validation sentences are the old corpus's 8 validation sentences and the 16 added after it.
    """
    out: list[tuple[str, str, str, str]] = []
    train_texts = [t for i, t in enumerate(SENTENCES[:40]) if i % 10 < 8]
    valid_texts = [t for i, t in enumerate(SENTENCES[:40]) if i % 10 >= 8] + list(SENTENCES[40:])
    for split, voices, texts, per in (("train", TRAIN_VOICES, train_texts, TRAIN_PER_VOICE),
                                      ("valid", VALID_VOICES, valid_texts, VALID_PER_VOICE)):
        for v, speaker in enumerate(voices):
            for k in range(per):
                out.append((split, speaker, f"{speaker}_{k + 1:03d}", texts[v * per + k]))
    return out


def build_demo_corpus(corpus: Path) -> Path:
    """Synthesize every utterance into a temporary folder, index it, and rename it into place."""
    corpus.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=corpus.parent, prefix=f".{corpus.name}."))
    try:
        _synthesize(tmp)
        (tmp / "SENTENCES.txt").write_text("".join(f"{s}/{p}/{n}.wav\t{t}\n" for s, p, n, t in utterances()))
        for split in SPLITS:
            write_metadata(tmp / split, workers=2)
        _publish(tmp, corpus)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return corpus


def _synthesize(out: Path) -> None:
    # A fresh interpreter per build: eSpeak NG keeps state between utterances (see espeak.py).
    jobs = [(f"{split}/{spk}/{stem}.wav", text, *VOICES[spk]) for split, spk, stem, text in utterances()]
    script = Path(__file__).with_name("espeak.py")
    res = subprocess.run([sys.executable, str(script), str(out)], input=json.dumps(jobs), text=True,
                         capture_output=True, timeout=600)
    if res.returncode != 0:
        tail = " ".join(res.stderr.strip().splitlines()[-1:]) or f"exit status {res.returncode}"
        raise DataError(f"demo_speech: eSpeak NG synthesis failed ({tail}); "
                        "check that espeakng-loader is installed (pip install espeakng-loader)")


def _publish(tmp: Path, corpus: Path) -> None:
    # Another process may have finished first; its copy is identical (deterministic), keep it.
    try:
        os.rename(tmp, corpus)
    except OSError:
        if not (corpus / "valid" / "metadata.csv").is_file():
            raise


@DATASETS.register("demo_speech")
def demo_speech(sample_rate: int, split: str = "train", segment_seconds: float | None = 2.0,
                degradations: dict | None = None, short: str = "pad", seed: int = 0,
                cache_dir: str | None = None, context_seconds: float | None = None,
                context_hop_seconds: float | None = 0.016, text: bool = False, phonemes: bool = False,
                language: str = "en-us") -> DegradedSpeech:
    """The embedded eSpeak NG demo corpus (32 train / 24 valid utterances, no voice or sentence shared).

    Synthesized on first use and cached (see ``cache_dir`` / $RESTOREKIT_DEMO_DIR). ``split``
    valid is deterministic per index. Items: clean/degraded float32 (time,) at sample_rate Hz;
    with ``context_seconds`` also ``context``/``context_offset`` (see degraded_speech; the
    utterances are 2.1-3.0 s, so a 4.096 s row is the whole utterance). ``text`` adds each file's
    sentence as ``text`` (str); ``phonemes`` (implies text) adds ``phonemes`` (LongTensor (L,), eSpeak
    NG IPA in ``language``, ids in restorekit.text.PHONEME_SYMBOLS), as degraded_speech does.
    """
    root = demo_corpus_dir(split, cache_dir)
    return DegradedSpeech(roots=[str(root)], sample_rate=sample_rate, degradations=degradations,
                          segment_seconds=segment_seconds, short=short, validation=(split == "valid"), seed=seed,
                          context_seconds=context_seconds, context_hop_seconds=context_hop_seconds,
                          transcripts="demo" if text or phonemes else None, phonemes=phonemes, language=language)
