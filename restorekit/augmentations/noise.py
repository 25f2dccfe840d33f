"""Additive noise: ``noise`` (recordings from folders / metadata.csv) and ``colored_noise``.

The SNR is measured on *active* speech, so leading and trailing silence does not make the
noise quieter than asked for. Both ops draw all randomness from the generator they are
given (audiomentations' noise transforms use numpy's global state, which would break
per-sample seeding), so the mixing and the coloured-noise synthesis are written here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from restorekit import audio
from restorekit.augmentations import AUGMENTATIONS
from restorekit.augmentations.base import Augmentation, as_choices, as_range, draw
from restorekit.augmentations.sources import AudioPool, list_audio
from restorekit.errors import AudioError

FRAME_SECONDS = 0.02
ACTIVE_RANGE_DB = 40.0  # frames more than this far below the loudest frame count as pauses
SILENCE_DB = -100.0  # below this (dBFS) the input is silent: there is no speech power to scale to
SILENT_REFERENCE_DB = -25.0  # speech level assumed for silent inputs, so they still get noise


def active_power(wave: np.ndarray, sr: int) -> float:
    """Mean power of the active 20 ms frames (within 40 dB of the loudest); 0.0 for silence.

    A simple energy gate in the spirit of ITU-T P.56's active speech level, written here
    because no declared library exposes one for numpy arrays.
    """
    x = np.asarray(wave, dtype=np.float64)
    hop = max(1, int(sr * FRAME_SECONDS))
    n = len(x) // hop
    energies = np.square(x[: n * hop]).reshape(n, hop).mean(axis=1) if n else np.array([np.mean(x**2)])
    loudest = float(energies.max()) if energies.size else 0.0
    if loudest <= 10 ** (SILENCE_DB / 10):
        return 0.0
    active = energies[energies >= loudest * 10 ** (-ACTIVE_RANGE_DB / 10)]
    return float(active.mean())


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, sr: int, snr_db: float) -> tuple[np.ndarray, dict[str, Any]]:
    """``speech + g * noise`` with g set so active-speech power / noise power = ``snr_db``."""
    p_speech = active_power(speech, sr)
    p_noise = float(np.mean(np.square(noise, dtype=np.float64)))
    params: dict[str, Any] = {"snr_db": snr_db}
    if p_noise <= 0.0:  # all-zero noise: nothing to add, and no division by zero
        return speech.copy(), {**params, "silent_noise": True}
    if p_speech <= 0.0:
        p_speech = 10 ** (SILENT_REFERENCE_DB / 10)
        params["silent_input"] = True
    gain = np.sqrt(p_speech / (p_noise * 10 ** (snr_db / 10)))
    return (speech + np.float32(gain) * noise).astype(np.float32), params


def crop_or_loop(noise: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """``n`` samples of ``noise`` from a random offset, looping it when it is shorter."""
    offset = int(rng.integers(len(noise)))
    if offset + n <= len(noise):
        return noise[offset : offset + n], offset
    return np.take(noise, np.arange(offset, offset + n), mode="wrap"), offset


def _read_noise(path: Path, sr: int) -> np.ndarray:
    wave, _ = audio.load(path, sr=sr)
    if not np.any(wave):
        raise AudioError(f"{path}: is digital silence, so it cannot set an SNR")
    return wave


@AUGMENTATIONS.register("noise")
class Noise(Augmentation):
    """Add a random noise file (cropped/looped, random offset) at snr_db [low, high] dB SNR.

    ``dirs``: folders of noise audio or metadata.csv files. Decoded files are cached
    (``cache_mb``); an unreadable file is skipped with a warning (``pool.bad`` counts them).
    """

    def __init__(self, dirs: list[str], snr_db: list[float] = (5.0, 30.0), cache_mb: float = 1024) -> None:
        self.snr_db = as_range(snr_db, "noise", "snr_db", -30.0, 100.0)
        self.pool = AudioPool(list_audio(dirs, "noise", "noise"), _read_noise, "noise", "noise", cache_mb)

    def apply(self, wave: np.ndarray, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
        path, noise = self.pool.pick(rng, sr)
        segment, offset = crop_or_loop(noise, len(wave), rng)
        out, params = mix_at_snr(wave, segment, sr, draw(rng, self.snr_db))
        return out, {**params, "file": str(path), "offset_s": offset / sr}


def colored(color: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-power white (flat), pink (1/f) or brown (1/f^2) noise, shaped in the frequency domain."""
    white = rng.standard_normal(n)
    if color == "white" or n < 2:
        return white.astype(np.float32)
    spectrum = np.fft.rfft(white)
    f = np.arange(len(spectrum), dtype=np.float64)
    f[0] = 1.0  # keep DC finite; it is removed below
    exponent = {"pink": 0.5, "brown": 1.0}[color]  # amplitude ~ f^-0.5 gives power ~ 1/f
    spectrum = spectrum / f**exponent
    spectrum[0] = 0.0
    shaped = np.fft.irfft(spectrum, n)
    return (shaped / np.sqrt(np.mean(shaped**2))).astype(np.float32)


@AUGMENTATIONS.register("colored_noise")
class ColoredNoise(Augmentation):
    """Add white, pink or brown noise (no files needed) at snr_db [low, high] dB SNR."""

    COLORS = ("white", "pink", "brown")

    def __init__(self, snr_db: list[float] = (5.0, 30.0), colors: list[str] = ("white", "pink", "brown")) -> None:
        self.snr_db = as_range(snr_db, "colored_noise", "snr_db", -30.0, 100.0)
        self.colors = as_choices(colors, "colored_noise", "colors", self.COLORS)

    def apply(self, wave: np.ndarray, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
        color = self.colors[int(rng.integers(len(self.colors)))]
        out, params = mix_at_snr(wave, colored(color, len(wave), rng), sr, draw(rng, self.snr_db))
        return out, {**params, "color": color}
