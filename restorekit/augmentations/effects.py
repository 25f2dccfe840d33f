"""FINALLY's studio-effect degradations: ``crystalizer``, ``flanger`` and ``vibrato``.

The FINALLY recipe (and the open framework that reproduces it) runs FFmpeg's ``crystalizer``,
``flanger`` and ``vibrato`` filters; restorekit excludes torchaudio/FFmpeg bindings, so the
three are written here in numpy with FFmpeg's parameter meanings. Why not a library:
pedalboard has no crystalizer and no vibrato, and its Chorus (JUCE) cannot stand in for
either modulated delay: its delay never goes below 1 ms (a flanger sweeps from 0 ms), its LFO
always starts at the same phase, and its vibrato (mix 1) is centred on a fixed latency that
would shift degraded speech against the clean target. audiomentations has none of the three.
The fractional delay itself is ``numpy.interp`` (linear interpolation, as FFmpeg's default).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from restorekit.augmentations import AUGMENTATIONS
from restorekit.augmentations.base import Augmentation, as_number, as_range, draw

VIBRATO_MAX_SWING_MS = 5.0  # FFmpeg's vibrato buffer: depth 1.0 swings the delay over 5 ms


def crystalize(wave: np.ndarray, intensity: float) -> np.ndarray:
    """``y[n] = x[n] + intensity * (x[n] - x[n-1])`` with ``x[-1] = 0``; same length."""
    previous = np.concatenate([np.zeros(1, dtype=wave.dtype), wave[:-1]])
    return (wave + np.float32(intensity) * (wave - previous)).astype(np.float32)


def modulated_delay(wave: np.ndarray, delay: np.ndarray) -> np.ndarray:
    """``y[n] = x(n - delay[n])`` (``delay`` in samples, fractional, may be negative).

    Linear interpolation between neighbouring samples; the signal is zero outside its
    length, so the first and last samples ramp to zero instead of repeating an edge value.
    """
    n = np.arange(len(wave), dtype=np.float64)
    padded = np.concatenate([[0.0], wave.astype(np.float64), [0.0]])
    return np.interp(n - delay + 1.0, np.arange(len(padded), dtype=np.float64), padded, left=0.0, right=0.0)


def lfo(n: int, sr: int, rate_hz: float, phase: float) -> np.ndarray:
    """A sine LFO, ``sin(2 pi rate t + phase)``, over ``n`` samples at ``sr`` Hz."""
    return np.sin(2 * np.pi * rate_hz * np.arange(n) / sr + phase)


@AUGMENTATIONS.register("crystalizer")
class Crystalizer(Augmentation):
    """Exaggerate sample-to-sample changes: y[n] = x[n] + i (x[n] - x[n-1]), i from intensity [low, high].

    FFmpeg's ``crystalizer`` (FINALLY: i in [1, 4], the framework draws whole numbers; here
    i is continuous). A first difference is a high-frequency tilt: +6 dB per octave, up to
    (1 + 2i) times at Nyquist. Peaks can therefore exceed 1: the op does not clip them
    (FFmpeg and the framework hard-clip at +-1, which adds clipping as a second, undeclared
    degradation); a ``chain`` scales its whole output back under ``peak_limit`` instead.
    Same length and rate out; params: ``intensity``.
    """

    def __init__(self, intensity: list[float] = (1.0, 4.0)) -> None:
        self.intensity = as_range(intensity, "crystalizer", "intensity", 0.0, 10.0)

    def apply(self, wave: np.ndarray, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
        intensity = draw(rng, self.intensity)
        return crystalize(wave, intensity), {"intensity": intensity}


@AUGMENTATIONS.register("flanger")
class Flanger(Augmentation):
    """Mix in a copy delayed by a swept delay: delay_ms + depth_ms [low, high] ms, swept at rate_hz.

    FFmpeg's ``flanger`` without feedback (FINALLY: depth 1-8 ms, sweep 0.5 Hz): the delay of
    the wet copy follows a sine between ``delay_ms`` and ``delay_ms + depth_ms`` (ms), at
    ``rate_hz`` [low, high] Hz, from a random LFO phase (FFmpeg always starts at the minimum;
    a random phase is what a random crop of a longer file sees). Output
    ``(x + width * x_delayed) / (1 + width)``, FFmpeg's gains (its width 71 % is 0.71). The dry
    path is not delayed, so speech stays aligned with the clean target. Params: ``depth_ms``,
    ``rate_hz``, ``phase`` (radians).
    """

    def __init__(
        self,
        depth_ms: list[float] = (1.0, 8.0),
        rate_hz: list[float] = (0.5, 0.5),
        delay_ms: float = 0.0,
        width: float = 0.71,
    ) -> None:
        self.depth_ms = as_range(depth_ms, "flanger", "depth_ms", 0.0, 50.0)
        self.rate_hz = as_range(rate_hz, "flanger", "rate_hz", 0.01, 20.0)
        self.delay_ms = as_number(delay_ms, "flanger", "delay_ms", 0.0, 50.0)
        self.width = as_number(width, "flanger", "width", 0.0, 1.0)

    def apply(self, wave: np.ndarray, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
        depth_ms, rate_hz = draw(rng, self.depth_ms), draw(rng, self.rate_hz)
        phase = float(rng.uniform(0.0, 2 * np.pi))
        # (1 - sin) / 2 sweeps 0..1, so the delay spans exactly [delay_ms, delay_ms + depth_ms]
        sweep = (1.0 - lfo(len(wave), sr, rate_hz, phase)) / 2
        delay = (self.delay_ms + depth_ms * sweep) * sr / 1000.0
        wet = modulated_delay(wave, delay)
        out = (wave + self.width * wet) / (1.0 + self.width)
        return out.astype(np.float32), {"depth_ms": depth_ms, "rate_hz": rate_hz, "phase": phase}


@AUGMENTATIONS.register("vibrato")
class Vibrato(Augmentation):
    """Pitch wobble by a sine-swept delay: rate_hz [low, high] Hz, depth [low, high] as a fraction of 5 ms.

    FFmpeg's ``vibrato`` (FINALLY: 5-8 Hz, depth 0.5): ``depth`` is FFmpeg's ``d``, the
    fraction of its 5 ms buffer the delay sweeps over, so 0.5 swings the delay over 2.5 ms
    peak to peak (at 8 Hz about +-6 % in pitch, a semitone). Fully wet, like FFmpeg's. The
    sweep is centred on zero delay (FFmpeg's sits 2.5-5 ms late, which would shift degraded
    speech against the clean target); random LFO phase. Params: ``rate_hz``, ``depth``,
    ``swing_ms`` (peak to peak), ``phase`` (radians).
    """

    def __init__(self, rate_hz: list[float] = (5.0, 8.0), depth: list[float] = (0.5, 0.5)) -> None:
        self.rate_hz = as_range(rate_hz, "vibrato", "rate_hz", 0.1, 20.0)
        self.depth = as_range(depth, "vibrato", "depth", 0.0, 1.0)

    def apply(self, wave: np.ndarray, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
        rate_hz, depth = draw(rng, self.rate_hz), draw(rng, self.depth)
        phase = float(rng.uniform(0.0, 2 * np.pi))
        swing_ms = depth * VIBRATO_MAX_SWING_MS
        delay = swing_ms / 2 * lfo(len(wave), sr, rate_hz, phase) * sr / 1000.0
        out = modulated_delay(wave, delay).astype(np.float32)
        return out, {"rate_hz": rate_hz, "depth": depth, "swing_ms": swing_ms, "phase": phase}
