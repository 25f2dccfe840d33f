"""Reverberation: ``reverb`` (measured RIR files), ``room_reverb`` (pyroomacoustics rooms)
and ``algorithmic_reverb`` (pedalboard's Freeverb).

Two ways to normalise an impulse response (``normalize_ir``), both keeping reverberant speech
aligned with the clean target (a model must not learn to shift audio):

- ``rms`` (default): the RIR is aligned on its direct path (kept from 2 ms before it, direct
  path = +1) and the output is scaled back to the input's RMS, so reverb changes the sound,
  not the level.
- ``peak`` (FINALLY's recipe): the RIR is trimmed before its largest sample and divided by
  it, so the IR used starts with +1 at index 0; the output is not rescaled, so the level
  rises by the energy of the tail, as in the paper.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from scipy import signal

from restorekit import audio
from restorekit.augmentations import AUGMENTATIONS
from restorekit.augmentations.base import Augmentation, as_range, draw
from restorekit.augmentations.sources import AudioPool, list_audio
from restorekit.errors import AudioError, ConfigError

PRE_DIRECT_SECONDS = 0.002  # kept before the direct-path peak: the resampled peak rings both ways
IR_NORMALIZATIONS = ("rms", "peak")


def direct_path(rir: np.ndarray, sr: int) -> int:
    """Index of the direct path: the first peak within 6 dB of the largest one.

    Not simply the largest sample: a floor or wall reflection can add up to more than the
    direct sound, and aligning on it would pull speech ahead of the clean target.
    """
    mag = np.abs(rir)
    first = int(np.argmax(mag >= 0.5 * mag.max()))
    return first + int(np.argmax(mag[first : first + max(1, int(0.001 * sr))]))


def align_rir(rir: np.ndarray, sr: int, max_seconds: float) -> np.ndarray:
    """The RIR from 2 ms before its direct path, at most ``max_seconds``, direct path = +1."""
    direct = direct_path(rir, sr)
    pre = int(round(PRE_DIRECT_SECONDS * sr))
    start = direct - pre
    out = rir[max(start, 0) : direct + int(max_seconds * sr)]
    if start < 0:
        out = np.concatenate([np.zeros(-start, dtype=rir.dtype), out])
    # Positive direct path: a polarity flip is inaudible but would flip the waveform target.
    return (out / rir[direct]).astype(np.float32)


def convolve_aligned(wave: np.ndarray, rir: np.ndarray, sr: int) -> np.ndarray:
    """``wave * rir`` cut so the direct path lands on the input's samples, at the input's RMS."""
    pre = int(round(PRE_DIRECT_SECONDS * sr))
    wet = signal.fftconvolve(wave, rir)[pre : pre + len(wave)]
    rms_in = np.sqrt(np.mean(np.square(wave, dtype=np.float64)))
    rms_out = np.sqrt(np.mean(np.square(wet, dtype=np.float64)))
    if rms_out == 0.0:  # silent input stays silent
        return np.zeros_like(wave)
    return (wet * (rms_in / rms_out)).astype(np.float32)


def peak_ir(rir: np.ndarray, sr: int, max_seconds: float) -> np.ndarray:
    """The IR from its largest-magnitude sample on (at most ``max_seconds``), divided by that sample.

    Signed division, so the IR used starts with exactly +1 at index 0 (a polarity flip is
    inaudible but would flip the waveform target); everything before the peak is dropped.
    """
    peak = int(np.argmax(np.abs(rir)))
    return (rir[peak : peak + max(1, int(max_seconds * sr))] / rir[peak]).astype(np.float32)


def convolve_peak(wave: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """``wave * rir`` cut to the input's length; with a peak-normalised IR nothing is delayed."""
    return signal.fftconvolve(wave, rir)[: len(wave)].astype(np.float32)


def normalize(rir: np.ndarray, sr: int, max_seconds: float, mode: str) -> np.ndarray:
    """An IR as the op uses it: ``rms`` = aligned on the direct path, ``peak`` = from its peak, peak = +1."""
    return peak_ir(rir, sr, max_seconds) if mode == "peak" else align_rir(rir, sr, max_seconds)


def convolve(wave: np.ndarray, rir: np.ndarray, sr: int, mode: str) -> np.ndarray:
    """Convolve with an IR from ``normalize``: at the input's RMS (``rms``) or as it comes (``peak``)."""
    return convolve_peak(wave, rir) if mode == "peak" else convolve_aligned(wave, rir, sr)


def _check_mode(value: Any, op: str) -> str:
    if value not in IR_NORMALIZATIONS:
        raise ConfigError(
            f"augmentation '{op}': args.normalize_ir must be one of {', '.join(IR_NORMALIZATIONS)}, "
            f"got {value!r} (rms: output at the input's RMS; peak: IR trimmed before its peak and divided by it)"
        )
    return value


def _read_rir(path: Path, sr: int, max_seconds: float, normalize_ir: str = "rms") -> np.ndarray:
    try:
        data, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise AudioError(f"{path}: cannot be decoded as audio ({exc})") from exc
    # Channel 0, not the mean: averaging microphones a few cm apart comb-filters the RIR.
    rir = data[:, 0] if data.size else data.reshape(-1)
    if not np.any(rir) or not np.isfinite(rir).all():
        raise AudioError(f"{path}: is silent or has NaN/Inf samples, so it is not an impulse response")
    return normalize(audio.resample(rir, file_sr, sr), sr, max_seconds, normalize_ir)


@AUGMENTATIONS.register("reverb")
class Reverb(Augmentation):
    """Convolve with a random measured RIR file (any rate, channel 0), aligned: no delay added.

    ``dirs``: folders of RIR audio or metadata.csv files; ``max_seconds`` truncates long
    tails (after the direct path, or the peak). ``normalize_ir``: ``rms`` (output at the
    input's RMS, RIR aligned on its direct path) or ``peak`` (FINALLY: RIR trimmed before its
    largest sample and divided by it, output level not matched). Decoded, resampled,
    normalised RIRs are cached per rate. Params: ``file``.
    """

    def __init__(
        self, dirs: list[str], max_seconds: float = 1.5, cache_mb: float = 256, normalize_ir: str = "rms"
    ) -> None:
        if not max_seconds > 0:
            raise ConfigError(f"augmentation 'reverb': args.max_seconds must be > 0, got {max_seconds!r}")
        self.normalize_ir = _check_mode(normalize_ir, "reverb")
        files = list_audio(dirs, "reverb", "RIR")
        # partial, not a lambda: DataLoader workers started with 'spawn' pickle the chain
        reader = partial(_read_rir, max_seconds=max_seconds, normalize_ir=self.normalize_ir)
        self.pool = AudioPool(files, reader, "reverb", "RIR", cache_mb)

    def apply(self, wave: np.ndarray, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
        path, rir = self.pool.pick(rng, sr)
        return convolve(wave, rir, sr, self.normalize_ir), {"file": str(path)}


@AUGMENTATIONS.register("room_reverb")
class RoomReverb(Augmentation):
    """Convolve with a simulated shoebox-room RIR (pyroomacoustics) for rt60 [low, high] s.

    Simulation is not paid per sample: ``pool_size`` rooms (size ``room_size`` = three
    [low, high] ranges in metres; random source and microphone) are simulated once per
    sample rate from ``pool_seed`` and each sample draws one. ``max_order`` caps the image
    source order (cost); params report the RT60 measured on the RIR actually used.
    ``normalize_ir``: ``rms`` or ``peak``, as for ``reverb``.
    """

    def __init__(
        self,
        rt60: list[float] = (0.2, 1.0),
        room_size: list[list[float]] = ((3.0, 10.0), (3.0, 8.0), (2.5, 4.0)),
        pool_size: int = 32,
        pool_seed: int = 0,
        max_order: int = 40,
        normalize_ir: str = "rms",
    ) -> None:
        self.normalize_ir = _check_mode(normalize_ir, "room_reverb")
        self.rt60 = as_range(rt60, "room_reverb", "rt60", 0.05, 5.0)
        if not isinstance(room_size, (list, tuple)) or len(room_size) != 3:
            raise ConfigError(
                "augmentation 'room_reverb': args.room_size must be three [low, high] ranges "
                f"in metres (length, width, height), got {room_size!r}"
            )
        self.room_size = [as_range(r, "room_reverb", f"room_size[{i}]", 1.5, 100.0) for i, r in enumerate(room_size)]
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            raise ConfigError(f"augmentation 'room_reverb': args.pool_size must be a positive integer, got {pool_size!r}")
        self.pool_size, self.pool_seed, self.max_order = pool_size, int(pool_seed), int(max_order)
        self.pools: dict[int, list[tuple[np.ndarray, dict[str, Any]]]] = {}

    def pool(self, sr: int) -> list[tuple[np.ndarray, dict[str, Any]]]:
        """The simulated RIRs at ``sr`` (simulated on first use; same seed, same rooms)."""
        if sr not in self.pools:
            rng = np.random.default_rng(self.pool_seed)
            self.pools[sr] = [self._simulate(rng, sr) for _ in range(self.pool_size)]
        return self.pools[sr]

    def _simulate(self, rng: np.random.Generator, sr: int) -> tuple[np.ndarray, dict[str, Any]]:
        import pyroomacoustics as pra  # heavy import, paid only by configs that simulate rooms

        dims = np.array([draw(rng, r) for r in self.room_size])
        rt60 = draw(rng, self.rt60)
        try:
            absorption, order = pra.inverse_sabine(rt60, dims)
        except ValueError:  # Sabine cannot reach this RT60 in this room: use the most absorbent walls
            absorption, order = 0.99, 1
        room = pra.ShoeBox(dims, fs=sr, materials=pra.Material(absorption), max_order=min(order, self.max_order))
        margin = np.minimum(0.5, dims / 4)
        room.add_source(rng.uniform(margin, dims - margin))
        room.add_microphone(rng.uniform(margin, dims - margin))
        room.compute_rir()
        rir = np.asarray(room.rir[0][0], dtype=np.float32)
        measured = float(room.measure_rt60()[0][0])
        params = {"rt60_target": rt60, "rt60": measured, "room_m": [round(float(d), 2) for d in dims]}
        return normalize(rir, sr, 3.0, self.normalize_ir), params

    def apply(self, wave: np.ndarray, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
        pool = self.pool(sr)
        i = int(rng.integers(len(pool)))
        rir, params = pool[i]
        return convolve(wave, rir, sr, self.normalize_ir), {**params, "pool_index": i}


@AUGMENTATIONS.register("algorithmic_reverb")
class AlgorithmicReverb(Augmentation):
    """pedalboard's Freeverb: room_size, damping, wet_level [low, high] in 0..1; dry kept at 1."""

    def __init__(
        self,
        room_size: list[float] = (0.1, 0.9),
        damping: list[float] = (0.1, 0.9),
        wet_level: list[float] = (0.05, 0.5),
    ) -> None:
        self.room_size = as_range(room_size, "algorithmic_reverb", "room_size", 0.0, 1.0)
        self.damping = as_range(damping, "algorithmic_reverb", "damping", 0.0, 1.0)
        self.wet_level = as_range(wet_level, "algorithmic_reverb", "wet_level", 0.0, 1.0)

    def apply(self, wave: np.ndarray, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
        import pedalboard

        params = {
            "room_size": draw(rng, self.room_size),
            "damping": draw(rng, self.damping),
            "wet_level": draw(rng, self.wet_level),
        }
        # A fresh plugin per call: Freeverb keeps its tail between calls, which would leak
        # one sample's reverb into the next.
        plugin = pedalboard.Reverb(**params, dry_level=1.0, width=0.0)
        return plugin(wave, sr).astype(np.float32), params
