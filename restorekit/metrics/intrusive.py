"""Intrusive (paired) metrics: the estimate scored against its clean reference.

PESQ and STOI/ESTOI come from the reference packages (``pesq``, ``pystoi``). SI-SDR, LSD and
the mel distance are short formulas no installed package provides on numpy arrays, so they
are written here from their definitions.
"""
from __future__ import annotations

import numpy as np

from restorekit.metrics import METRICS
from restorekit.metrics.base import Metric, MetricFailure, is_silent


class _Pesq(Metric):
    needs_reference = True
    requires = ("pesq",)
    mode = "wb"

    def score(self, estimate: np.ndarray, reference: np.ndarray | None, sr: int) -> dict[str, float]:
        import pesq

        # pesq crashes with a bare ValueError (NaN to int) on a silent estimate: say why instead.
        if is_silent(estimate):
            raise MetricFailure("the estimate is silent; PESQ is undefined for silence")
        try:
            value = pesq.pesq(sr, reference, estimate, self.mode, on_error=pesq.PesqError.RAISE_EXCEPTION)
        except pesq.PesqError as exc:
            raise MetricFailure(f"pesq could not score this pair: {_text(exc)}") from exc
        except ValueError as exc:
            raise MetricFailure(f"pesq failed on this pair: {exc}") from exc
        return {self.keys[0]: value}


@METRICS.register("pesq_wb")
class PesqWB(_Pesq):
    """Wide-band PESQ (ITU-T P.862.2), MOS-LQO 1.04-4.64, at 16 kHz; reference required."""

    sample_rate = 16000
    keys = ("pesq_wb",)
    mode = "wb"


@METRICS.register("pesq_nb")
class PesqNB(_Pesq):
    """Narrow-band PESQ (ITU-T P.862), MOS-LQO 1.02-4.55, at 8 kHz; reference required."""

    sample_rate = 8000
    keys = ("pesq_nb",)
    mode = "nb"


class _Stoi(Metric):
    needs_reference = True
    requires = ("pystoi",)
    sample_rate = 10000  # pystoi's internal rate; resampling here keeps pystoi from doing it
    extended = False

    def score(self, estimate: np.ndarray, reference: np.ndarray | None, sr: int) -> dict[str, float]:
        from pystoi import stoi

        return {self.keys[0]: stoi(reference, estimate, sr, extended=self.extended)}


@METRICS.register("stoi")
class Stoi(_Stoi):
    """Short-time objective intelligibility (pystoi), 0-1, at 10 kHz; reference required."""

    keys = ("stoi",)


@METRICS.register("estoi")
class Estoi(_Stoi):
    """Extended STOI (pystoi, extended=True), 0-1, at 10 kHz; reference required."""

    keys = ("estoi",)
    extended = True


@METRICS.register("si_sdr")
class SiSdr(Metric):
    """Scale-invariant SDR in dB (Le Roux et al. 2019), at the input rate; reference required."""

    needs_reference = True
    keys = ("si_sdr",)

    def __init__(self, zero_mean: bool = True) -> None:
        self.zero_mean = zero_mean

    def score(self, estimate: np.ndarray, reference: np.ndarray | None, sr: int) -> dict[str, float]:
        est, ref = estimate.astype(np.float64), reference.astype(np.float64)
        if self.zero_mean:
            est, ref = est - est.mean(), ref - ref.mean()
        energy = float(ref @ ref)
        if energy == 0.0:
            raise MetricFailure("the reference is silent; SI-SDR is undefined")
        if not est.any():
            raise MetricFailure("the estimate is silent; SI-SDR is undefined")
        target = (est @ ref) / energy * ref  # projection of the estimate on the reference
        noise = est - target
        eps = np.finfo(np.float64).eps  # a perfect estimate gives a large finite value (~180 dB)
        return {"si_sdr": 10 * np.log10((target @ target + eps) / (noise @ noise + eps))}


def _stft_power(wave: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    import librosa

    return np.abs(librosa.stft(wave.astype(np.float64), n_fft=n_fft, hop_length=hop)) ** 2


@METRICS.register("lsd")
class LogSpectralDistance(Metric):
    """Log-spectral distance in dB (RMS over bins, mean over frames), at the input rate; lower is better."""

    needs_reference = True
    keys = ("lsd",)
    lower_is_better = frozenset({"lsd"})

    def __init__(self, n_fft: int = 2048, hop_length: int = 512, eps: float = 1e-10) -> None:
        self.n_fft, self.hop_length, self.eps = n_fft, hop_length, eps

    def score(self, estimate: np.ndarray, reference: np.ndarray | None, sr: int) -> dict[str, float]:
        est = 10 * np.log10(_stft_power(estimate, self.n_fft, self.hop_length) + self.eps)
        ref = 10 * np.log10(_stft_power(reference, self.n_fft, self.hop_length) + self.eps)
        per_frame = np.sqrt(np.mean((ref - est) ** 2, axis=0))
        return {"lsd": float(per_frame.mean())}


@METRICS.register("mel_distance")
class MelDistance(Metric):
    """Mean absolute log10-mel difference (80 bands, 1024-point FFT), at 16 kHz; lower is better."""

    needs_reference = True
    sample_rate = 16000
    keys = ("mel_distance",)
    lower_is_better = frozenset({"mel_distance"})

    def __init__(self, n_mels: int = 80, n_fft: int = 1024, hop_length: int = 256, eps: float = 1e-5) -> None:
        self.n_mels, self.n_fft, self.hop_length, self.eps = n_mels, n_fft, hop_length, eps

    def score(self, estimate: np.ndarray, reference: np.ndarray | None, sr: int) -> dict[str, float]:
        est, ref = self._logmel(estimate, sr), self._logmel(reference, sr)
        return {"mel_distance": float(np.mean(np.abs(est - ref)))}

    def _logmel(self, wave: np.ndarray, sr: int) -> np.ndarray:
        import torch

        from restorekit.mel import LogMel  # the one mel front end of models, losses and metrics

        if getattr(self, "_mel", None) is None or self._mel.sample_rate != sr:
            self._mel = LogMel(sr, self.n_fft, self.hop_length, n_mels=self.n_mels, power=2.0, log_floor=self.eps)
        with torch.no_grad():
            log_e = self._mel(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))[None])[0]
        return log_e.double().numpy() / np.log(10.0)


def _text(exc: BaseException) -> str:
    msg = exc.args[0] if exc.args else exc
    return msg.decode() if isinstance(msg, bytes) else str(msg)
