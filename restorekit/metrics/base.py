"""The metric contract: ``metric(estimate, sr, reference=None) -> {key: float}``.

A metric declares whether it ``needs_reference`` and the ``sample_rate`` it works at (None:
any rate); ``__call__`` resamples to that rate itself, so callers pass audio at whatever rate
it has. A metric that cannot score an input raises :class:`MetricFailure` with the reason; it
never returns an invented value (a NaN is turned into a failure too).
"""
from __future__ import annotations

import os
from typing import ClassVar

import numpy as np

from restorekit.audio import check_sample_rate, resample

# Intrusive metrics accept this much length difference (seconds) between estimate and
# reference and score the common part; more means the pair is not aligned.
MAX_LENGTH_MISMATCH_S = 0.05


class MetricFailure(Exception):
    """A metric could not score one input; ``reason`` says why (recorded, never imputed)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Metric:
    """Base of every metric: ``__call__(estimate (T,), sr, reference (T,) | None) -> dict[str, float]``.

    Subclasses set ``needs_reference``, ``sample_rate`` (Hz the metric works at; None for any),
    ``keys`` (the names of the values they return) and ``lower_is_better`` (keys where a
    smaller value is better), and implement ``score(estimate, reference, sr)`` on float32
    mono arrays already at the metric's rate (and of equal length when intrusive).
    """

    needs_reference: ClassVar[bool] = False
    sample_rate: ClassVar[int | None] = None
    # True for models trained on audio within full scale (DNSMOS, PLCMOS): an estimate beyond
    # [-1, 1] is a failure. Judged on the audio as given; the copy resampled to the metric's rate
    # is clipped to [-1, 1], since resampling overshoots a little (a 48 kHz file peaking at
    # 0.99997 came to 1.0045 at 16 kHz and was wrongly refused as clipped).
    needs_full_scale: ClassVar[bool] = False
    keys: ClassVar[tuple[str, ...]] = ()
    lower_is_better: ClassVar[frozenset[str]] = frozenset()

    def __call__(
        self, estimate: np.ndarray, sr: int, reference: np.ndarray | None = None
    ) -> dict[str, float]:
        sr = check_sample_rate(sr)
        if self.needs_full_scale:
            check_full_scale(np.asarray(estimate, dtype=np.float32), type(self).__name__.upper())
        est = self._prepare(estimate, sr, "estimate")
        if self.needs_full_scale:
            est = np.clip(est, -1.0, 1.0)
        ref = None
        if self.needs_reference:
            if reference is None:
                raise MetricFailure(f"{type(self).__name__} needs a reference signal and got none")
            ref = self._prepare(reference, sr, "reference")
            est, ref = align(est, ref, self.sample_rate or sr)
        values = self.score(est, ref, self.sample_rate or sr)
        return check_values(values, type(self).__name__)

    def score(self, estimate: np.ndarray, reference: np.ndarray | None, sr: int) -> dict[str, float]:
        raise NotImplementedError(f"{type(self).__name__} must implement score()")

    def _prepare(self, wave: np.ndarray, sr: int, what: str) -> np.ndarray:
        wave = np.asarray(wave, dtype=np.float32)
        if wave.ndim != 1:
            raise MetricFailure(f"the {what} must be mono audio of shape (time,), got shape {wave.shape}")
        if wave.size == 0:
            raise MetricFailure(f"the {what} is empty")
        if not np.isfinite(wave).all():
            raise MetricFailure(f"the {what} contains NaN/Inf samples")
        return resample(wave, sr, self.sample_rate) if self.sample_rate else wave


def check_full_scale(wave: np.ndarray, who: str) -> None:
    """MetricFailure when ``wave`` goes beyond [-1, 1] (clipped output cannot be scored fairly)."""
    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    if peak > 1.0:
        raise MetricFailure(f"{who} expects samples in [-1, 1]; this estimate peaks at {peak:.3f} (clipped output)")


def align(est: np.ndarray, ref: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """Trim a pair to the common length when they differ by a resampling rounding at most."""
    if abs(len(est) - len(ref)) > MAX_LENGTH_MISMATCH_S * sr:
        raise MetricFailure(
            f"estimate ({len(est) / sr:.3f} s) and reference ({len(ref) / sr:.3f} s) differ in length "
            f"by more than {MAX_LENGTH_MISMATCH_S * 1000:.0f} ms; intrusive metrics need aligned pairs"
        )
    n = min(len(est), len(ref))
    return est[:n], ref[:n]


def check_values(values: dict[str, float], who: str) -> dict[str, float]:
    """Plain floats; a NaN/Inf means the metric could not score, so it becomes a failure."""
    out = {k: float(v) for k, v in values.items()}
    bad = [k for k, v in out.items() if not np.isfinite(v)]
    if bad:
        raise MetricFailure(f"{who} gave a non-finite value for {', '.join(bad)}")
    return out


def is_silent(wave: np.ndarray, floor_db: float = -100.0) -> bool:
    """Whether a signal is digital silence (RMS below ``floor_db`` dBFS)."""
    ms = float(np.mean(np.square(wave, dtype=np.float64)))
    return ms <= 10 ** (floor_db / 10)


def offline() -> bool:
    """Whether downloads are off (tests, air-gapped machines): the hub offline variables."""
    flags = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "RESTOREKIT_OFFLINE")
    return any(os.environ.get(f, "").lower() in ("1", "true", "yes") for f in flags)
