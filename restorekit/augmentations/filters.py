"""Spectral degradations: ``bandlimit`` (low-pass or down-and-up sampling) and ``eq``.

Filters come from scipy (zero-phase ``sosfiltfilt``, so nothing is delayed) and pedalboard
(peak / shelf EQ, as a microphone or a room colours speech); resampling from soxr.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy import signal

from restorekit import audio
from restorekit.augmentations import AUGMENTATIONS
from restorekit.augmentations.base import Augmentation, as_choices, as_range, draw, draw_int, fit_length
from restorekit.errors import ConfigError


@AUGMENTATIONS.register("bandlimit")
class Bandlimit(Augmentation):
    """Remove content above cutoff_hz [low, high] Hz: zero-phase low-pass or down-and-up resampling.

    A cutoff at or above the input's Nyquist frequency leaves the input unchanged (and says
    so in params). ``order`` is the Butterworth order of the low-pass (applied forwards and
    backwards, so the effective order is twice that). ``resample`` goes to 2 * cutoff Hz and
    back with soxr, whose anti-alias filter leaves nothing above the cutoff. ``cutoffs_hz``,
    a list of cutoffs (Hz), draws one of them instead of a ``cutoff_hz`` range: FINALLY and
    HiFi++ make bandwidth-extension pairs with ``modes: [resample]``,
    ``cutoffs_hz: [1000, 2000, 4000]``. Params: ``mode``, ``cutoff_hz``.
    """

    MODES = ("lowpass", "resample")

    def __init__(
        self,
        cutoff_hz: list[float] = (2000.0, 12000.0),
        modes: list[str] = ("lowpass", "resample"),
        order: int = 8,
        cutoffs_hz: list[float] | None = None,
    ) -> None:
        self.cutoff_hz = as_range(cutoff_hz, "bandlimit", "cutoff_hz", 100.0, 192000.0)
        self.modes = as_choices(modes, "bandlimit", "modes", self.MODES)
        self.order = int(order)
        self.cutoffs_hz = None if cutoffs_hz is None else _cutoff_list(cutoffs_hz)

    def apply(self, wave: np.ndarray, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
        mode = self.modes[int(rng.integers(len(self.modes)))]
        if self.cutoffs_hz is None:
            cutoff = draw(rng, self.cutoff_hz)
        else:
            cutoff = self.cutoffs_hz[int(rng.integers(len(self.cutoffs_hz)))]
        params: dict[str, Any] = {"mode": mode, "cutoff_hz": cutoff}
        if cutoff >= 0.49 * sr:
            return wave.copy(), {**params, "skipped": "cutoff above Nyquist"}
        if mode == "lowpass":
            sos = signal.butter(self.order, cutoff, btype="lowpass", fs=sr, output="sos")
            return signal.sosfiltfilt(sos, wave).astype(np.float32), params
        low_sr = int(round(2 * cutoff))  # soxr's anti-alias filter sits just below Nyquist
        down = audio.resample(wave, sr, low_sr)
        return fit_length(audio.resample(down, low_sr, sr), len(wave)), params


def _cutoff_list(value: Any) -> tuple[float, ...]:
    """``cutoffs_hz``: a non-empty list of cutoffs in Hz, each within 100 Hz .. 192 kHz."""
    items = [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    ok = isinstance(items, (list, tuple)) and len(items) > 0
    ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) and 100 <= v <= 192000 for v in items)
    if not ok:
        raise ConfigError(
            f"augmentation 'bandlimit': args.cutoffs_hz must be a non-empty list of cutoffs in Hz "
            f"(each 100-192000), e.g. [1000, 2000, 4000], or null to use cutoff_hz; got {value!r}"
        )
    return tuple(float(v) for v in items)


@AUGMENTATIONS.register("eq")
class Eq(Augmentation):
    """Random peaking EQ (pedalboard): bands [low, high] peaks at 50 Hz-Nyquist, gain_db [low, high], q [low, high]."""

    def __init__(
        self, bands: list[int] = (1, 4), gain_db: list[float] = (-12.0, 12.0), q: list[float] = (0.5, 4.0)
    ) -> None:
        self.bands = as_range(bands, "eq", "bands", 1, 16)
        self.gain_db = as_range(gain_db, "eq", "gain_db", -40.0, 40.0)
        self.q = as_range(q, "eq", "q", 0.1, 20.0)

    def apply(self, wave: np.ndarray, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
        import pedalboard

        peaks = []
        for _ in range(draw_int(rng, self.bands)):
            # log-uniform centre frequency: equal chances per octave, as hearing weighs them
            hz = float(np.exp(rng.uniform(np.log(50.0), np.log(0.45 * sr))))
            peaks.append({"hz": hz, "gain_db": draw(rng, self.gain_db), "q": draw(rng, self.q)})
        board = pedalboard.Pedalboard(
            [pedalboard.PeakFilter(cutoff_frequency_hz=p["hz"], gain_db=p["gain_db"], q=p["q"]) for p in peaks]
        )
        return board(wave, sr).astype(np.float32), {"peaks": peaks}
