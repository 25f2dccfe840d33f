"""Differentiable wide-band PESQ (ITU-T P.862 / P.862.2) in torch, and FINALLY's PESQ loss.

The pipeline follows the P.862 reference model at 16 kHz: level alignment to a fixed power in
the 350-3250 Hz band, the P.862.2 wide-band input filter (a 100 Hz high-pass), 32 ms Hann frames
with 50 % overlap, 49 Bark bands, per-band frequency-response and per-frame gain compensation,
Zwicker loudness, symmetric and asymmetric disturbances with a dead zone, and the L6 (syllable)
/ L2 (utterance) aggregation. Written by hand because no library computes PESQ differentiably in
torch (``torch-pesq`` imports torchaudio, which restorekit excludes; the ``pesq`` package is C
and not differentiable). What differs from the ITU reference:

- no time alignment: estimate and reference must already be aligned sample by sample (true of
  a restoration model's output);
- the wide-band IIR input filter is applied as its impulse response truncated to 1024 taps
  (below 1e-12 of the peak by then) by FFT convolution: exact to float32, differentiable, and
  free of a sample-by-sample recursion that would be slow under autograd;
- the >16 s time weighting and the re-alignment of "bad intervals" are left out.
"""
from __future__ import annotations

import julius
import numpy as np
import torch
from torch import nn

from restorekit.errors import AudioError, ConfigError
from restorekit.losses import LOSSES
from restorekit.losses.base import Loss

PESQ_RATE = 16_000
FRAME, HOP = 512, 256          # 32 ms Hann frames, 50 % overlap at 16 kHz
_PADDING = 5120                # the reference appends 320 ms of zeros (DATAPADDING_MSECS)
_TARGET_POWER = 1e7            # level alignment target (TARGET_AVG_POWER)
_SILENCE_OF_5_SAMPLES = 500.0  # leading/trailing silence criterion on the aligned reference
_SYLLABLE, _SYLLABLE_STEP = 20, 10  # frames per "syllable" window and its hop
_FIR_TAPS = 1024

# P.862 tables for 16 kHz (49 Bark bands over 256 FFT bins): facts of the standard.
_BINS_PER_BAND = (
    1, 1, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2,
    3, 3, 3, 3, 4, 3, 4, 5, 4, 5, 6, 6, 7, 8, 9, 9, 12, 12, 15, 16, 18, 21, 25, 20,
)
_CENTRE_BARK = (
    0.078672, 0.316341, 0.636559, 0.961246, 1.290450, 1.624217, 1.962597, 2.305636, 2.653383,
    3.005889, 3.363201, 3.725371, 4.092449, 4.464486, 4.841533, 5.223642, 5.610866, 6.003256,
    6.400869, 6.803755, 7.211971, 7.625571, 8.044611, 8.469146, 8.899232, 9.334927, 9.776288,
    10.223374, 10.676242, 11.134952, 11.599563, 12.070135, 12.546731, 13.029408, 13.518232,
    14.013264, 14.514566, 15.022202, 15.536238, 16.056736, 16.583761, 17.117382, 17.657663,
    18.204674, 18.758478, 19.319147, 19.886751, 20.461355, 21.043034,
)
_WIDTH_BARK = (
    0.157344, 0.317994, 0.322441, 0.326934, 0.331474, 0.336061, 0.340697, 0.345381, 0.350114,
    0.354897, 0.359729, 0.364611, 0.369544, 0.374529, 0.379565, 0.384653, 0.389794, 0.394989,
    0.400236, 0.405538, 0.410894, 0.416306, 0.421773, 0.427297, 0.432877, 0.438514, 0.444209,
    0.449962, 0.455774, 0.461645, 0.467577, 0.473569, 0.479621, 0.485736, 0.491912, 0.498151,
    0.504454, 0.510819, 0.517250, 0.523745, 0.530308, 0.536934, 0.543629, 0.550390, 0.557220,
    0.564119, 0.571085, 0.578125, 0.585232,
)
_POW_DENS_CORRECTION = (
    100.000000, 99.999992, 100.000000, 100.000008, 100.000008, 100.000015, 99.999992, 99.999969,
    50.000027, 100.000000, 99.999969, 100.000015, 99.999947, 100.000061, 53.047077, 110.000046,
    117.991989, 65.000000, 68.760147, 69.999931, 71.428818, 75.000038, 76.843384, 80.968781,
    88.646126, 63.864388, 68.155350, 72.547775, 75.584831, 58.379192, 80.950836, 64.135651,
    54.384785, 73.821884, 64.437073, 59.176456, 65.521278, 61.399822, 58.144047, 57.004543,
    64.126297, 54.311001, 61.114979, 55.077751, 56.849335, 55.628868, 53.137054, 54.985844,
    79.546974,
)
_ABS_THRESH_POWER = (
    51286152.0, 2454709.5, 70794.59375, 4897.788574, 1174.897705, 389.045166, 104.712860,
    45.708820, 17.782795, 9.772372, 4.897789, 3.090296, 1.905461, 1.258925, 0.977237, 0.724436,
    0.562341, 0.457088, 0.389045, 0.331131, 0.295121, 0.269153, 0.257040, 0.251189, 0.251189,
    0.251189, 0.251189, 0.263027, 0.288403, 0.309030, 0.338844, 0.371535, 0.398107, 0.436516,
    0.467735, 0.489779, 0.501187, 0.501187, 0.512861, 0.524807, 0.524807, 0.524807, 0.512861,
    0.478630, 0.426580, 0.371535, 0.363078, 0.416869, 0.537032,
)
_SP, _SL = 6.910853e-6, 1.866055e-1  # power and loudness scaling constants at 16 kHz
_ZWICKER_POWER = 0.23
# Level-alignment filter: (Hz, dB) knots, linear in dB between them (align_filter_dB).
_ALIGN_FILTER_DB = ((0, -500), (300, -500), (350, 0), (3250, 0), (3500, -500), (8000, -500))
# P.862.2 wide-band input filter at 16 kHz, one biquad: b0, b1, b2, a1, a2.
_WB_INPUT_BIQUAD = (2.740826, -5.4816519, 2.740826, -1.9444777, 0.94597794)
_D_WEIGHT, _A_WEIGHT = 0.1, 0.0309


class PesqTables(nn.Module):
    """The fixed P.862 tables as buffers (they follow ``.to(device)``); no trainable weights."""

    def __init__(self) -> None:
        super().__init__()
        edges = np.cumsum((0,) + _BINS_PER_BAND)
        bark = torch.zeros(len(_BINS_PER_BAND), FRAME // 2)
        for band, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
            bark[band, lo:hi] = 1.0
        bark[:, 0] = 0.0  # the reference drops the DC bin
        scale = torch.tensor(_POW_DENS_CORRECTION, dtype=torch.float64) * _SP
        self._buffer("bark", bark * scale.float()[:, None])
        self._buffer("thresh", torch.tensor(_ABS_THRESH_POWER))
        centre = torch.tensor(_CENTRE_BARK)
        self._buffer("zwicker", _ZWICKER_POWER * (6 / (centre + 2)).clamp(1.0, 2.0) ** 0.15)
        self._buffer("width", torch.tensor(_WIDTH_BARK))
        self._buffer("input_fir", torch.from_numpy(_wb_input_impulse_response()).float())
        self._buffer("window", torch.hann_window(FRAME, periodic=True))

    def _buffer(self, name: str, value: torch.Tensor) -> None:
        self.register_buffer(name, value.float(), persistent=False)


def _wb_input_impulse_response() -> np.ndarray:
    """The wide-band input biquad's impulse response, truncated to ``_FIR_TAPS`` (scipy filters)."""
    from scipy.signal import lfilter

    b0, b1, b2, a1, a2 = _WB_INPUT_BIQUAD
    impulse = np.zeros(_FIR_TAPS)
    impulse[0] = 1.0
    return lfilter([b0, b1, b2], [1.0, a1, a2], impulse)


def check_pesq_input(estimate: torch.Tensor, reference: torch.Tensor, sample_rate: int, where: str) -> None:
    """Raise :class:`AudioError` unless both are (batch, time) of one shape and long enough."""
    for what, x in (("estimate", estimate), ("reference", reference)):
        if not isinstance(x, torch.Tensor) or x.ndim != 2:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise AudioError(
                f"{where}: {what} must be a (batch, time) tensor, got shape {shape}; "
                "add a batch axis with x[None] or drop a channel axis with x[:, 0]"
            )
    if estimate.shape != reference.shape:
        raise AudioError(
            f"{where}: estimate {tuple(estimate.shape)} and reference {tuple(reference.shape)} differ in shape; "
            "PESQ compares them sample by sample, so crop or pad both to one length first"
        )
    needed = int(np.ceil(FRAME * sample_rate / PESQ_RATE))
    if estimate.shape[1] < needed:
        raise AudioError(
            f"{where}: {estimate.shape[1]} samples at {sample_rate} Hz is shorter than one 32 ms PESQ frame "
            f"({needed} samples); give longer audio (PESQ is meant for 0.25 s and more)"
        )


def check_sample_rate(sample_rate: int, where: str) -> int:
    """A positive whole number of Hz, or :class:`ConfigError`."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
        raise ConfigError(f"{where}: sample_rate must be a positive whole number of Hz, got {sample_rate!r}")
    return sample_rate


def to_pesq_rate(wave: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """(B, T) at ``sample_rate`` -> (B, T') at 16 kHz (julius' windowed-sinc resampler)."""
    return wave if sample_rate == PESQ_RATE else julius.resample_frac(wave, sample_rate, PESQ_RATE)


def align_level(wave: torch.Tensor) -> torch.Tensor:
    """Scale each row so its power in the 350-3250 Hz band is 1e7, as P.862's level alignment.

    The band filter is applied in the FFT domain over the signal plus 320 ms of zeros, like the
    reference; the gain is differentiable, so scaling the input changes nothing downstream.
    """
    length = wave.shape[1] + _PADDING
    n_fft = 1 << (length - 1).bit_length()
    freqs = np.arange(n_fft // 2 + 1) * PESQ_RATE / n_fft
    knots_hz, knots_db = zip(*_ALIGN_FILTER_DB)
    gain = torch.from_numpy(10 ** (np.interp(freqs, knots_hz, knots_db) / 20)).to(wave)
    banded = torch.fft.irfft(torch.fft.rfft(wave, n_fft) * gain, n_fft)[:, :length]
    power = banded.square().sum(dim=1, keepdim=True) / length
    # A silent row stays silent (0 * finite) instead of becoming NaN.
    return wave * (_TARGET_POWER / power.clamp_min(1e-20)).sqrt()


def wb_input_filter(wave: torch.Tensor, fir: torch.Tensor) -> torch.Tensor:
    """P.862.2's wide-band input stage: 15-sample fade in/out, then the 100 Hz high-pass (causal)."""
    ramp = torch.arange(1, 16, device=wave.device, dtype=wave.dtype) / 16
    fade = torch.ones(wave.shape[1], device=wave.device, dtype=wave.dtype)
    fade = torch.cat([ramp, fade[15:-15], ramp.flip(0)])
    padded = nn.functional.pad((wave * fade)[:, None], (fir.numel() - 1, 0))
    # julius' FFT convolution correlates, like conv1d, so the impulse response is flipped.
    return julius.fftconv.fft_conv1d(padded, fir.flip(0)[None, None])[:, 0]


def bark_spectrum(wave: torch.Tensor, tables: PesqTables) -> torch.Tensor:
    """Power per Bark band, (B, T) -> (B, frames, 49); frame k starts at sample 256k."""
    padded = nn.functional.pad(wave, (0, HOP))  # the last frame the model may use overlaps the end
    spec = torch.stft(padded, FRAME, HOP, FRAME, tables.window, center=False, return_complex=True)
    power = spec.real.square() + spec.imag.square()
    return torch.einsum("bfk,nf->bkn", power[:, : FRAME // 2], tables.bark)


def speech_frames(reference: torch.Tensor, n_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """First and last frame (B,) between the reference's leading and trailing silence.

    P.862 skips samples while the sum of 5 consecutive |samples| of the aligned, filtered
    reference stays under 500; a row that is silent throughout keeps every frame.
    """
    sums = nn.functional.avg_pool1d(reference.detach().abs()[:, None], 5, stride=1)[:, 0] * 5
    loud = sums >= _SILENCE_OF_5_SAMPLES
    positions = torch.arange(loud.shape[1], device=loud.device)
    first = torch.where(loud, positions, loud.shape[1]).amin(dim=1)
    last = torch.where(loud, positions, -1).amax(dim=1)
    start, stop = first // HOP, (last + 5) // HOP - 1
    usable = loud.any(dim=1) & (stop >= start)
    start = torch.where(usable, start, 0)
    stop = torch.where(usable, stop.clamp(max=n_frames - 1), n_frames - 1)
    return start, stop


def total_audible(bark: torch.Tensor, thresh: torch.Tensor, factor: float) -> torch.Tensor:
    """Sum over bands 1..48 of the band powers above ``factor`` x the hearing threshold: (B, F)."""
    return (bark * (bark > factor * thresh))[..., 1:].sum(dim=-1)


def loudness(bark: torch.Tensor, tables: PesqTables) -> torch.Tensor:
    """Zwicker loudness density per band (B, F, 49); zero at or below the hearing threshold."""
    thresh, power = tables.thresh, tables.zwicker
    audible = bark > thresh
    above = torch.where(audible, bark, thresh)  # keeps pow()'s gradient finite where masked
    value = (2 * thresh) ** power * ((0.5 + 0.5 * above / thresh) ** power - 1)
    return torch.where(audible, value, 0.0) * _SL


def equalise(
    ref: torch.Tensor, deg: torch.Tensor, used: torch.Tensor, length: int, tables: PesqTables
) -> tuple[torch.Tensor, torch.Tensor]:
    """P.862's compensations: the reference's bands take the estimate's long-term response
    (ratio clipped to [0.01, 100]), the estimate's frames take the reference's gain (smoothed)."""
    thresh = tables.thresh
    speech = (used & (total_audible(ref, thresh, 100.0) >= 1e7))[..., None]
    frames = (length + _PADDING) // HOP - 1

    def mean_audible(bark: torch.Tensor) -> torch.Tensor:
        return (bark * (bark > 100 * thresh) * speech).sum(dim=1) / frames

    band_ratio = ((mean_audible(deg) + 1000) / (mean_audible(ref) + 1000)).clamp(0.01, 100.0)
    ref = ref * band_ratio[:, None]
    gain = (total_audible(ref, thresh, 1.0) + 5e3) / (total_audible(deg, thresh, 1.0) + 5e3)
    deg = deg * smooth_frame_gain(gain).clamp(3e-4, 5.0)[..., None]
    return ref, deg


def smooth_frame_gain(gain: torch.Tensor) -> torch.Tensor:
    """g'[t] = 0.8 g[t] + 0.2 g'[t-1], g'[0] = g[0], for (B, F): the recursion written as its
    impulse response 0.8 * 0.2^k (16 taps, 0.2^16 < 1e-11) over the rows padded on the left with
    g[0], which reproduces the start condition exactly."""
    taps = 0.8 * 0.2 ** torch.arange(16, device=gain.device, dtype=gain.dtype)
    padded = nn.functional.pad(gain[:, None], (15, 0), mode="replicate")
    return nn.functional.conv1d(padded, taps.flip(0)[None, None])[:, 0]


def frame_disturbances(
    ref: torch.Tensor, deg: torch.Tensor, tables: PesqTables
) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric and asymmetric disturbance per frame, (B, F) each, before time aggregation."""
    ref_loud, deg_loud = loudness(ref, tables), loudness(deg, tables)
    diff = deg_loud - ref_loud
    dead_zone = 0.25 * torch.minimum(ref_loud, deg_loud)
    diff = diff.sign() * (diff.abs() - dead_zone).clamp_min(0.0)
    asym = ((deg + 50) / (ref + 50)) ** 1.2
    asym = torch.where(asym < 3.0, 0.0, asym.clamp(max=12.0))
    width = tables.width[1:]
    symm = _safe_root((width * diff[..., 1:]).square().sum(-1) / width.sum(), 2) * width.sum()
    asymm = (width * (diff * asym)[..., 1:].abs()).sum(-1)
    weight = ((total_audible(ref, tables.thresh, 1.0) + 1e5) / 1e7) ** 0.04
    return (symm / weight).clamp(max=45.0), (asymm / weight).clamp(max=45.0)


def _safe_root(x: torch.Tensor, p: float) -> torch.Tensor:
    """x ** (1/p) for x >= 0 with a finite (zero) gradient at 0, where the plain root's is inf."""
    positive = x > 0
    return torch.where(positive, torch.where(positive, x, 1.0) ** (1 / p), 0.0)


def aggregate(disturbance: torch.Tensor, start: torch.Tensor, stop: torch.Tensor) -> torch.Tensor:
    """L6 over 20-frame windows hopped by 10 from ``start``, then L2 over windows: (B, F) -> (B,).

    Frames past ``stop`` count as zeros in the last windows, as in the reference.
    """
    # As many windows as the longest possible span needs (no device sync); unused ones are masked.
    n_windows = (disturbance.shape[1] - 1) // _SYLLABLE_STEP + 1
    offsets = torch.arange(n_windows, device=start.device)[:, None] * _SYLLABLE_STEP
    index = start[:, None, None] + offsets + torch.arange(_SYLLABLE, device=start.device)
    inside = index <= stop[:, None, None]
    flat = index.clamp(max=disturbance.shape[1] - 1).flatten(1)
    values = disturbance.gather(1, flat).view(index.shape) * inside
    syllables = _safe_root(values.pow(6).mean(dim=-1), 6)
    counted = offsets[None, :, 0] <= (stop - start)[:, None]
    return _safe_root((syllables.square() * counted).sum(-1) / counted.sum(-1), 2)


def pesq_disturbances(
    estimate: torch.Tensor, reference: torch.Tensor, sr: int, tables: PesqTables | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """P.862's symmetric and asymmetric disturbance indicators (d_symm, d_asymm), (B,) each, >= 0.

    ``estimate`` and ``reference`` are aligned (B, T) audio at ``sr`` Hz; computed in float32
    at 16 kHz whatever the autocast state. Differentiable with respect to ``estimate``.
    """
    check_sample_rate(sr, "pesq")
    check_pesq_input(estimate, reference, sr, "pesq")
    tables = (tables or PesqTables()).to(estimate.device)
    with torch.autocast(device_type=estimate.device.type, enabled=False):
        ref, deg = (to_pesq_rate(x.float(), sr) for x in (reference, estimate))
        ref, deg = (wb_input_filter(align_level(x), tables.input_fir) for x in (ref, deg))
        ref_bark, deg_bark = bark_spectrum(ref, tables), bark_spectrum(deg, tables)
        start, stop = speech_frames(ref, ref_bark.shape[1])
        used = torch.arange(ref_bark.shape[1], device=ref.device) <= stop[:, None]
        ref_bark, deg_bark = equalise(ref_bark, deg_bark, used, ref.shape[1], tables)
        symm, asymm = frame_disturbances(ref_bark, deg_bark, tables)
        return aggregate(symm, start, stop), aggregate(asymm, start, stop)


def pesq_mos(
    estimate: torch.Tensor, reference: torch.Tensor, sr: int, tables: PesqTables | None = None
) -> torch.Tensor:
    """Wide-band MOS-LQO (P.862.2 mapping, 1.04 to 4.64) of aligned (B, T) audio at ``sr`` Hz -> (B,).

    The score ``pesq.pesq(16000, ref, deg, "wb")`` approximates, without its time alignment.
    Argument order is restorekit's: estimate first, reference second.
    """
    symm, asymm = pesq_disturbances(estimate, reference, sr, tables)
    raw = 4.5 - _D_WEIGHT * symm - _A_WEIGHT * asymm
    return 0.999 + 4.0 / (1.0 + torch.exp(-1.3669 * raw + 3.8224))


@LOSSES.register("pesq_loss")
class PesqLoss(Loss):
    """FINALLY's PESQ loss: ``factor * (0.1 * d_symm + 0.0309 * d_asymm)``, batch mean, >= 0.

    Audio (B, T) at ``sample_rate`` Hz (resampled to 16 kHz inside) -> scalar; 0 for identical
    inputs, lower is better (it is 4.5 minus PESQ's raw score, times ``factor``: minimise it as
    is). Level-aligned like PESQ, so scaling the estimate is not rewarded. Computed in float32
    even under autocast. Estimate and reference must be time-aligned (no delay search).
    """

    def __init__(self, sample_rate: int = PESQ_RATE, factor: float = 0.5) -> None:
        super().__init__()
        self.sample_rate = check_sample_rate(sample_rate, "pesq_loss")
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or factor <= 0:
            raise ConfigError(f"pesq_loss: factor must be a number > 0 (FINALLY uses 0.5), got {factor!r}")
        self.factor = float(factor)
        self.tables = PesqTables()

    def forward(self, estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        check_pesq_input(estimate, reference, self.sample_rate, "pesq_loss")
        symm, asymm = pesq_disturbances(estimate, reference, self.sample_rate, self.tables)
        return self.factor * (_D_WEIGHT * symm + _A_WEIGHT * asymm).mean()


__all__ = ["PesqLoss", "PesqTables", "pesq_disturbances", "pesq_mos", "PESQ_RATE"]
