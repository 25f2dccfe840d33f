"""Level and amplitude degradations: ``gain``, ``clipping``, ``bitcrush``.

Each of these is one or two numpy expressions; wrapping a library for them would cost more
than it saves (pedalboard's Bitcrush, for one, gives 2^bits + 1 levels, not 2^bits).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from restorekit.augmentations import AUGMENTATIONS
from restorekit.augmentations.base import Augmentation, as_choices, as_number, as_range, draw, draw_int


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
    """Quantise [-1, 1] audio to bits [low, high] bits (at most 2^bits levels), optionally mixed with the dry input.

    ``wet`` [low, high] in 0..1 is the crushed share of the output,
    ``(1 - wet) * x + wet * crushed``, applied with probability ``wet_p`` (otherwise fully
    wet). FINALLY's framework runs FFmpeg's ``acrusher`` at its default mix, 0.5 (bits 1-9).
    The defaults (wet 1) are the plain quantiser and draw no extra random numbers, so
    configs written before ``wet`` existed give the same output for the same seed.
    Params: ``bits``, and ``wet`` when it is below 1.
    """

    def __init__(self, bits: list[int] = (4, 10), wet: list[float] = (1.0, 1.0), wet_p: float = 1.0) -> None:
        self.bits = as_range(bits, "bitcrush", "bits", 1, 24)
        self.wet = as_range(wet, "bitcrush", "wet", 0.0, 1.0)
        self.wet_p = as_number(wet_p, "bitcrush", "wet_p", 0.0, 1.0)

    def apply(self, wave: np.ndarray, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
        bits = draw_int(rng, self.bits)
        half = 2.0 ** (bits - 1)
        # mid-tread quantiser with codes -half .. half-1: exactly 2^bits levels, like PCM
        crushed = (np.clip(np.round(wave * half), -half, half - 1) / half).astype(np.float32)
        wet = self._draw_wet(rng)
        if wet == 1.0:
            return crushed, {"bits": bits}
        return ((1.0 - wet) * wave + wet * crushed).astype(np.float32), {"bits": bits, "wet": wet}

    def _draw_wet(self, rng: np.random.Generator) -> float:
        """The wet share for one sample; no random number is drawn for a fixed, always-used mix."""
        if self.wet_p < 1.0 and rng.random() >= self.wet_p:
            return 1.0
        return draw(rng, self.wet)
