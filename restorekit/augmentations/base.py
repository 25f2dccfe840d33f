"""The degradation contract.

An augmentation takes a float32 mono waveform ``(time,)`` at ``sr`` Hz and a numpy random
``Generator`` and returns ``(degraded, params)``: a float32 waveform of the *same length and
rate* and a plain dict of the parameters it drew (for logging). It never modifies its input
in place and draws all randomness from the generator it is given, so equal seeds give equal
output.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np


class Augmentation(ABC):
    """Base of every registered degradation: ``apply(wave, sr, rng) -> (wave, params)``."""

    @abstractmethod
    def apply(self, wave: np.ndarray, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
        """Degrade ``wave`` (float32, ``(time,)``, at ``sr`` Hz); same length and rate out."""

    def __call__(self, wave: np.ndarray, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
        out, params = self.apply(np.asarray(wave, dtype=np.float32), sr, rng)
        assert out.shape == np.shape(wave), (
            f"{type(self).__name__} changed the length: {np.shape(wave)} -> {out.shape}"
        )
        return out.astype(np.float32, copy=False), params
