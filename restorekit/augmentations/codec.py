"""``codec``: lossy speech/audio codecs, encoded and decoded in memory.

MP3, OGG Vorbis and Opus go through soundfile (libsndfile with LAME, libvorbis, libopus);
GSM full rate through pedalboard; A-law / mu-law (G.711) through soundfile's WAV codecs
after a telephone band (300-3400 Hz at 8 kHz). Every output is re-aligned to its input: the
codec delay is measured once per (codec, rate) on a probe signal and removed, and the length
is cropped or padded back, so the degraded audio lines up sample by sample with the clean.
"""
from __future__ import annotations

import io
from typing import Any

import numpy as np
import soundfile as sf
from scipy import signal

from restorekit import audio
from restorekit.augmentations import AUGMENTATIONS
from restorekit.augmentations.base import Augmentation, as_choices, as_range, draw, fit_length

MAX_DELAY_SECONDS = 0.2  # codec delays searched for: LAME's resampler adds ~70 ms at 16 kHz

CODECS = ("mp3", "vorbis", "opus", "gsm", "alaw", "mulaw")
MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
# libsndfile maps compression_level linearly onto these bitrate spans (kbps), per MPEG
# version for MP3 (MPEG-1 >= 32 kHz, MPEG-2 >= 16 kHz, MPEG-2.5 below) and for Opus.
MP3_SPANS = ((32000, (32.0, 320.0)), (16000, (8.0, 160.0)), (0, (8.0, 64.0)))
OPUS_SPAN = (6.0, 256.0)


def _compression(kbps: float, span: tuple[float, float]) -> float:
    lo, hi = span
    return float(np.clip(1.0 - (kbps - lo) / (hi - lo), 0.0, 0.999))  # 1.0 is rejected for MP3


def _nearest(sr: int, rates: tuple[int, ...]) -> int:
    """The smallest supported rate >= sr (or the largest), so the codec sees the whole band."""
    above = [r for r in rates if r >= sr]
    return min(above) if above else max(rates)


def _roundtrip(wave: np.ndarray, sr: int, **fmt: Any) -> tuple[np.ndarray, int]:
    """Encode to an in-memory file with soundfile and decode it; returns (audio, bytes)."""
    buf = io.BytesIO()
    sf.write(buf, wave, sr, **fmt)
    size = buf.tell()
    buf.seek(0)
    out, _ = sf.read(buf, dtype="float32")
    return out, size


def _mp3(wave: np.ndarray, sr: int, kbps: float) -> tuple[np.ndarray, dict[str, Any]]:
    rate = _nearest(sr, MP3_RATES)
    span = next(s for floor, s in MP3_SPANS if rate >= floor)
    x = audio.resample(wave, sr, rate)
    level = _compression(kbps, span)
    out, size = _roundtrip(x, rate, format="MP3", subtype="MPEG_LAYER_III", compression_level=level, bitrate_mode="CONSTANT")
    return audio.resample(out, rate, sr), {"kbps": kbps, "coded_kbps": _kbps(size, len(x), rate)}


def _vorbis(wave: np.ndarray, sr: int, quality: float) -> tuple[np.ndarray, dict[str, Any]]:
    out, size = _roundtrip(wave, sr, format="OGG", subtype="VORBIS", compression_level=1.0 - quality)
    return out, {"quality": quality, "coded_kbps": _kbps(size, len(wave), sr)}


def _opus(wave: np.ndarray, sr: int, kbps: float) -> tuple[np.ndarray, dict[str, Any]]:
    rate = _nearest(sr, OPUS_RATES)
    x = audio.resample(wave, sr, rate)
    out, size = _roundtrip(x, rate, format="OGG", subtype="OPUS", compression_level=_compression(kbps, OPUS_SPAN))
    return audio.resample(out, rate, sr), {"kbps": kbps, "coded_kbps": _kbps(size, len(x), rate)}


def _gsm(wave: np.ndarray, sr: int) -> tuple[np.ndarray, dict[str, Any]]:
    import pedalboard

    # GSM runs at 8 kHz; soxr's steep anti-alias filter, not pedalboard's default resampler
    # (which leaks -40 dB above 4 kHz), so the band limit is as sharp as a real phone line's.
    narrow = audio.resample(wave, sr, 8000)
    coded = pedalboard.GSMFullRateCompressor()(narrow, 8000)
    return audio.resample(coded, 8000, sr), {"coded_kbps": 13.0}


def _g711(wave: np.ndarray, sr: int, law: str) -> tuple[np.ndarray, dict[str, Any]]:
    narrow = audio.resample(wave, sr, 8000)
    # telephone band, zero-phase so it adds no delay
    sos = signal.butter(4, [300, 3400], btype="bandpass", fs=8000, output="sos")
    narrow = signal.sosfiltfilt(sos, narrow).astype(np.float32)
    subtype = {"alaw": "ALAW", "mulaw": "ULAW"}[law]
    out, _ = _roundtrip(np.clip(narrow, -1, 1), 8000, format="WAV", subtype=subtype)
    return audio.resample(out, 8000, sr), {"coded_kbps": 64.0}


def _kbps(size: int, samples: int, sr: int) -> float:
    return round(size * 8 / (samples / sr) / 1000, 1)


def measure_lag(reference: np.ndarray, other: np.ndarray, max_lag: int) -> int:
    """Lag (samples, within +-max_lag) at which ``other`` best matches ``reference``; 0 for silence."""
    n = min(len(reference), len(other))
    c = signal.fftconvolve(other[:n], reference[:n][::-1], mode="full")  # cross-correlation via FFT
    lo, hi = max(0, n - 1 - max_lag), min(len(c), n + max_lag)
    window = c[lo:hi]
    if not np.any(window):
        return 0
    return int(np.argmax(window)) + lo - (n - 1)


def _shift(wave: np.ndarray, lag: int, n: int) -> np.ndarray:
    """Undo a delay of ``lag`` samples and return exactly ``n`` samples."""
    if lag > 0:
        wave = wave[lag:]
    elif lag < 0:
        wave = np.concatenate([np.zeros(-lag, dtype=wave.dtype), wave])
    return fit_length(wave, n)


@AUGMENTATIONS.register("codec")
class Codec(Augmentation):
    """Encode/decode with one codec drawn from codecs (mp3, vorbis, opus, gsm, alaw, mulaw); aligned.

    Bitrates are drawn from ``mp3_kbps`` and ``opus_kbps`` [low, high] (kbps, CBR for MP3),
    Vorbis quality from ``vorbis_quality`` [low, high] in 0..1. A-law / mu-law and GSM
    work at 8 kHz (telephone band) and are resampled back. Same length and rate out.
    """

    def __init__(
        self,
        codecs: list[str] = CODECS,
        mp3_kbps: list[float] = (16.0, 64.0),
        vorbis_quality: list[float] = (0.0, 0.5),
        opus_kbps: list[float] = (6.0, 24.0),
    ) -> None:
        self.codecs = as_choices(codecs, "codec", "codecs", CODECS)
        self.mp3_kbps = as_range(mp3_kbps, "codec", "mp3_kbps", 8.0, 320.0)
        self.vorbis_quality = as_range(vorbis_quality, "codec", "vorbis_quality", 0.0, 1.0)
        self.opus_kbps = as_range(opus_kbps, "codec", "opus_kbps", 6.0, 256.0)

    def encode_decode(self, codec: str, wave: np.ndarray, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        """One codec round trip with its setting drawn from ``rng`` (not yet aligned)."""
        if codec == "mp3":
            return _mp3(wave, sr, draw(rng, self.mp3_kbps))
        if codec == "vorbis":
            return _vorbis(wave, sr, draw(rng, self.vorbis_quality))
        if codec == "opus":
            return _opus(wave, sr, draw(rng, self.opus_kbps))
        if codec == "gsm":
            return _gsm(wave, sr)
        return _g711(wave, sr, codec)

    def apply(self, wave: np.ndarray, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
        codec = self.codecs[int(rng.integers(len(self.codecs)))]
        out, params = self.encode_decode(codec, wave, sr, rng)
        out = np.asarray(out, dtype=np.float32)
        lag = measure_lag(wave, out, int(MAX_DELAY_SECONDS * sr))
        return _shift(out, lag, len(wave)), {"codec": codec, **params, "delay_removed": lag}
