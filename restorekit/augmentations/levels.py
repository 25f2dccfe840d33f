"""Level and amplitude degradations: ``gain``, ``clipping``, ``bitcrush``.

Each of these is one or two numpy expressions; wrapping a library for them would cost more
than it saves (pedalboard's Bitcrush, for one, gives 2^bits + 1 levels, not 2^bits).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from restorekit.augmentations import AUGMENTATIONS
from restorekit.augmentations.base import Augmentation, as_choices, as_range, draw, draw_int


@AUGMENTATIONS.register("gain")
class Gain(Augmentation):
    """Scale by a gain drawn from gain_db [low, high] (dB); same length and rate out."""

    def __init__(self, gain_db: list[float] = (-12.0, 6.0)) -> None:
        self.gain_db = as_range(gain_db, "gain", "gain_db", -120.0, 60.0)

    def apply(self, wave: np.ndarray, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
        g = draw(rng, self.gain_db)
        return wave * np.float32(10 ** (g / 20)), {"gain_db": g}


@AUGMENTATIONS.register("clipping")
class Clipping(Augmentation):
    """Hard or soft (tanh) clipping at level_db [low, high] dB relative to the input's peak."""

    MODES = ("hard", "soft")

    def __init__(self, level_db: list[float] = (-20.0, -3.0), modes: list[str] = ("hard", "soft")) -> None:
        self.level_db = as_range(level_db, "clipping", "level_db", -60.0, 0.0)
        self.modes = as_choices(modes, "clipping", "modes", self.MODES)

    def apply(self, wave: np.ndarray, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
        mode = self.modes[int(rng.integers(len(self.modes)))]
        level_db = draw(rng, self.level_db)
        peak = float(np.max(np.abs(wave))) if wave.size else 0.0
        if peak == 0.0:
            return wave.copy(), {"mode": mode, "level_db": level_db, "silent_input": True}
        level = np.float32(peak * 10 ** (level_db / 20))
        # soft: tanh knee that is linear for small samples and saturates at the clip level
        out = np.clip(wave, -level, level) if mode == "hard" else level * np.tanh(wave / level)
        return out.astype(np.float32), {"mode": mode, "level_db": level_db}


@AUGMENTATIONS.register("bitcrush")
class Bitcrush(Augmentation):
    """Quantise [-1, 1] audio to bits [low, high] bits: at most 2^bits distinct levels."""

    def __init__(self, bits: list[int] = (4, 10)) -> None:
        self.bits = as_range(bits, "bitcrush", "bits", 1, 24)

    def apply(self, wave: np.ndarray, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
        bits = draw_int(rng, self.bits)
        half = 2.0 ** (bits - 1)
        # mid-tread quantiser with codes -half .. half-1: exactly 2^bits levels, like PCM
        codes = np.clip(np.round(wave * half), -half, half - 1)
        return (codes / half).astype(np.float32), {"bits": bits}
