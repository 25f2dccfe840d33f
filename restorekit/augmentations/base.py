"""The degradation contract, and the small helpers every degradation shares.

An augmentation takes a float32 mono waveform ``(time,)`` at ``sr`` Hz and a numpy random
``Generator`` and returns ``(degraded, params)``: a float32 waveform of the *same length and
rate* and a plain dict of the parameters it drew (for logging). It never modifies its input
in place and draws all randomness from the generator it is given, so equal seeds give equal
output.

Parameters that are drawn per sample are given in config as ``[low, high]`` lists (a single
number means a fixed value); ``as_range`` checks them once, at build time, so a bad range is
a ConfigError naming the op and the argument, not a failure in the middle of training.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from restorekit.errors import ConfigError

Range = tuple[float, float]


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


def as_range(
    value: Any, op: str, arg: str, low: float | None = None, high: float | None = None
) -> Range:
    """``[low, high]`` (or one number, meaning a fixed value) checked against its limits."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value, value]
    ok = isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2
    if ok:
        ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    if not ok or value[0] > value[1]:
        raise ConfigError(
            f"augmentation '{op}': args.{arg} must be a [low, high] list of numbers with "
            f"low <= high (or one number), got {value!r}"
        )
    lo, hi = float(value[0]), float(value[1])
    if (low is not None and lo < low) or (high is not None and hi > high):
        raise ConfigError(
            f"augmentation '{op}': args.{arg} = [{lo:g}, {hi:g}] is outside the allowed "
            f"range [{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
        )
    return lo, hi


def as_number(value: Any, op: str, arg: str, low: float | None = None, high: float | None = None) -> float:
    """One number within its limits (a setting that is not drawn per sample)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"augmentation '{op}': args.{arg} must be one number, got {value!r}")
    return as_range(value, op, arg, low, high)[0]


def as_choices(value: Any, op: str, arg: str, allowed: Sequence[str]) -> tuple[str, ...]:
    """A non-empty list of names (or one name), each one of ``allowed``."""
    items = [value] if isinstance(value, str) else list(value or [])
    bad = [v for v in items if v not in allowed]
    if not items or bad:
        what = f"'{bad[0]}' is not one of them" if bad else "it is empty"
        raise ConfigError(
            f"augmentation '{op}': args.{arg} lists the choices to draw from but {what}; "
            f"allowed: {', '.join(allowed)}"
        )
    return tuple(items)


def draw(rng: np.random.Generator, bounds: Range) -> float:
    """A uniform draw from ``[low, high]``; a fixed value costs no random number."""
    lo, hi = bounds
    return lo if lo == hi else float(rng.uniform(lo, hi))


def draw_int(rng: np.random.Generator, bounds: Range) -> int:
    """A uniform integer from ``[low, high]`` inclusive."""
    lo, hi = int(round(bounds[0])), int(round(bounds[1]))
    return lo if lo == hi else int(rng.integers(lo, hi + 1))


def fit_length(wave: np.ndarray, n: int) -> np.ndarray:
    """Crop or zero-pad to ``n`` samples (codecs and resamplers may be off by a few)."""
    if len(wave) >= n:
        return wave[:n]
    return np.concatenate([wave, np.zeros(n - len(wave), dtype=wave.dtype)])
