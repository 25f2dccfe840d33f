"""Audio I/O and level helpers; nothing model-specific.

In memory, audio is a float32 numpy array of shape ``(time,)`` in [-1, 1] and always travels
with its sample rate. Files are read with soundfile (WAV, FLAC, OGG/Vorbis, Opus, MP3, ...),
resampled on the CPU with soxr, and written atomically.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from restorekit.errors import AudioError, one_line

MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 384_000
WRITE_FORMATS = {".wav": "WAV", ".flac": "FLAC"}


def check_sample_rate(sr: object, what: str = "sample rate") -> int:
    """``sr`` as an int, or an AudioError if it is not a usable rate."""
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer, float)) or sr != int(sr):
        raise AudioError(f"{what} must be a whole number of Hz, got {sr!r}")
    sr = int(sr)
    if not MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE:
        raise AudioError(
            f"unsupported {what} {sr} Hz: restorekit handles {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz"
        )
    return sr


def info(path: str | Path) -> sf._SoundFileInfo:
    """soundfile's header info (rate, channels, frames) with restorekit's errors."""
    path = _existing(path)
    try:
        return sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError(_unreadable(path, exc)) from exc


def load(
    path: str | Path,
    sr: int | None = None,
    offset: float = 0.0,
    duration: float | None = None,
) -> tuple[np.ndarray, int]:
    """Read ``path`` as float32 mono, resampled to ``sr`` (None keeps the file's rate).

    ``offset`` and ``duration`` (seconds, at the file's rate) read a segment without
    decoding the whole file. Multichannel audio is averaged to mono. Returns
    ``(wave, rate)``. Raises AudioError for a missing, unreadable, empty or non-finite file.
    """
    path = _existing(path)
    target = None if sr is None else check_sample_rate(sr, f"requested sample rate for {path}")
    wave, file_sr = _read(path, offset, duration)
    if file_sr != target and target is not None:
        wave = resample(wave, file_sr, target)
        file_sr = target
    return wave, file_sr


def _read(path: Path, offset: float, duration: float | None) -> tuple[np.ndarray, int]:
    try:
        with sf.SoundFile(str(path)) as fh:
            file_sr = fh.samplerate
            start = int(round(offset * file_sr))
            frames = -1 if duration is None else int(round(duration * file_sr))
            if start:
                fh.seek(min(start, fh.frames) if fh.frames > 0 else start)
            data = fh.read(frames=frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise AudioError(_unreadable(path, exc)) from exc
    check_sample_rate(file_sr, f"sample rate of {path}")
    if data.size == 0:
        raise AudioError(
            f"{path}: contains no samples"
            + (f" from {offset:.3f} s on" if offset else "")
            + "; remove it or re-export it"
        )
    wave = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    check_finite(wave, str(path))
    return np.ascontiguousarray(wave, dtype=np.float32), file_sr


def check_finite(wave: np.ndarray, where: str) -> None:
    """AudioError naming the first NaN/Inf sample, if there is one."""
    bad = ~np.isfinite(wave)
    if bad.any():
        first = int(np.argmax(bad))
        raise AudioError(
            f"{where}: contains {int(bad.sum())} NaN/Inf samples (first at sample {first}); "
            "the file is corrupt, re-export it"
        )


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: file not found; check the path")
    if path.is_dir():
        raise AudioError(f"{path}: is a folder, expected an audio file")
    return path


def _unreadable(path: Path, exc: BaseException) -> str:
    reason = one_line(exc)
    return (
        f"{path}: cannot be decoded as audio ({reason}); "
        "expected a WAV, FLAC, OGG/Vorbis, Opus or MP3 file"
    )


def resample(wave: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample a 1-D (or (time, channels)) float array with soxr's high-quality filter."""
    orig_sr = check_sample_rate(orig_sr, "source sample rate")
    target_sr = check_sample_rate(target_sr, "target sample rate")
    if orig_sr == target_sr:
        return np.asarray(wave, dtype=np.float32)
    out = soxr.resample(np.asarray(wave, dtype=np.float32), orig_sr, target_sr, quality="HQ")
    return out.astype(np.float32, copy=False)


def save(
    path: str | Path,
    wave: np.ndarray,
    sr: int,
    subtype: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write mono audio to WAV or FLAC (from the suffix), atomically.

    The file appears whole or not at all: it is written under a temporary name beside ``path``
    and renamed into place, so a write that fails (disk full, no permission: an AudioError
    saying so) or is interrupted leaves any previous file intact and no partial one. An
    existing file is kept (AudioError) unless ``overwrite``. Default subtype is 16-bit PCM;
    samples beyond [-1, 1] are clipped by the PCM encoding, so normalise first if that matters.
    """
    path = Path(path)
    fmt = WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise AudioError(f"{path}: cannot write '{path.suffix}' files; use .wav or .flac")
    if path.exists() and not overwrite:
        raise AudioError(f"{path}: already exists; not overwriting it (pass overwrite=True)")
    sr = check_sample_rate(sr)
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise AudioError(f"{path}: expected mono audio of shape (time,), got shape {wave.shape}")
    check_finite(wave, f"audio to be written to {path}")
    try:
        _write_atomically(path, wave, sr, fmt, subtype or "PCM_16")
    except (OSError, sf.LibsndfileError) as exc:  # the file system's answer: the user's to fix
        raise AudioError(
            f"{path}: could not be written ({one_line(exc)}); check the free space and write permission there"
        ) from exc
    return path


def _write_atomically(path: Path, wave: np.ndarray, sr: int, fmt: str, subtype: str) -> None:
    """Write to a temporary name beside ``path``, then rename; on any failure remove the temporary."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        sf.write(tmp, wave, sr, format=fmt, subtype=subtype)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def peak(wave: np.ndarray) -> float:
    """Largest absolute sample value."""
    return float(np.max(np.abs(wave))) if np.size(wave) else 0.0


def peak_normalize(wave: np.ndarray, peak_db: float = -1.0) -> np.ndarray:
    """Scale so the peak sits at ``peak_db`` dBFS; silence is returned unchanged."""
    p = peak(wave)
    if p == 0.0:
        return np.asarray(wave, dtype=np.float32)
    return (np.asarray(wave) * (10 ** (peak_db / 20) / p)).astype(np.float32)


def rms_db(wave: np.ndarray, floor_db: float = -120.0) -> float:
    """RMS level in dBFS, floored at ``floor_db`` for silence."""
    ms = float(np.mean(np.square(wave, dtype=np.float64))) if np.size(wave) else 0.0
    return max(10 * np.log10(ms) if ms > 0 else floor_db, floor_db)


def loudness(wave: np.ndarray, sr: int) -> float:
    """Integrated loudness in LUFS (ITU-R BS.1770-4, via pyloudnorm); -inf for silence."""
    import pyloudnorm

    meter = pyloudnorm.Meter(check_sample_rate(sr))
    if len(wave) < int(0.4 * sr):  # BS.1770 gates 400 ms blocks; shorter clips have no loudness
        raise AudioError(
            f"loudness needs at least 0.4 s of audio, got {len(wave) / sr:.3f} s; use rms_db for short clips"
        )
    return float(meter.integrated_loudness(np.asarray(wave, dtype=np.float64)))


def loudness_normalize(wave: np.ndarray, sr: int, target_lufs: float = -23.0) -> np.ndarray:
    """Scale to ``target_lufs``; silence is returned unchanged."""
    current = loudness(wave, sr)
    if not np.isfinite(current):
        return np.asarray(wave, dtype=np.float32)
    return (np.asarray(wave) * 10 ** ((target_lufs - current) / 20)).astype(np.float32)
