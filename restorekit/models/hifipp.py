"""HiFi++ generators (Andreev et al., ICASSP 2023) and their U-Net blocks, shared with FINALLY.

A HiFi-GAN backbone between three small U-Nets: SpectralUNet (mel -> linear-frequency 2-D U-Net ->
backbone input), WaveUNet (1-D multi-scale ResNet on the backbone's waveform channels) and
SpectralMaskNet (a softplus mask on each channel's complex STFT, from a 2-D U-Net). Written by hand:
no library ships these blocks. The U-Nets keep PyTorch's default conv init, as the official
HiFi++ code does; the HiFi-GAN parts, the WaveUNet input conv and conv_post are drawn from
N(0, 0.01) (restorekit.models.hifigan.init_weights) and the skip convs start as the identity.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from restorekit.errors import AudioError, ConfigError
from restorekit.mel import LogMel
from restorekit.models import MODELS
from restorekit.models.hifigan import HiFiBackbone, MelVocoder, identity_conv1d, init_weights, vocoder_mel, wn

_BLOCK_SLOPE = 0.01  # the U-Net blocks use LeakyReLU's default slope


class _Residual(nn.Module):
    """x + LeakyReLU(0.01) -> weight-normed 'same' conv (1-D kernel 5 or 2-D kernel 3)."""

    def __init__(self, width: int, dims: int) -> None:
        super().__init__()
        conv = nn.Conv1d(width, width, 5, padding=2) if dims == 1 else nn.Conv2d(width, width, 3, padding=1)
        self.conv = wn(conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(F.leaky_relu(x, _BLOCK_SLOPE))


def _block(width: int, depth: int, dims: int) -> nn.Sequential:
    return nn.Sequential(*[_Residual(width, dims) for _ in range(depth)])


class _Level(nn.Module):
    """One U-Net level: block -> strided-conv down -> inner -> nearest up + 1x1 conv -> block,
    then [input, that] concatenated and mixed back to ``width`` by a 1x1 conv."""

    def __init__(self, width: int, inner_width: int, inner: nn.Module, depth: int, scale: int, dims: int) -> None:
        super().__init__()
        conv = nn.Conv1d if dims == 1 else nn.Conv2d
        self.body = nn.Sequential(
            _block(width, depth, dims),
            wn(conv(width, inner_width, scale, scale)),
            inner,
            nn.Upsample(scale_factor=scale, mode="nearest"),
            wn(conv(inner_width, width, 1)),
            _block(width, depth, dims),
        )
        self.mix = wn(conv(2 * width, width, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mix(torch.cat([x, self.body(x)], 1))


class MultiScaleResnet(nn.Module):
    """U-Net of residual blocks (HiFi++'s MultiScaleResnet): (B, in_width, L) -> (B, out_width, L) for
    ``dims`` 1, (B, in_width, F, L) -> (B, out_width, F, L) for ``dims`` 2.

    One level per entry of ``widths`` (outermost first), ``depth`` residual blocks on each side,
    downsampling by ``scale`` between levels; in/out convs kernel 5 (1-D) or 3 (2-D). A 1-D input
    length must be a multiple of ``scale ** (levels - 1)``; 2-D inputs are zero-padded along
    frequency to such a multiple and cropped back (time is the caller's to pad).
    """

    def __init__(self, widths: Sequence[int], depth: int, in_width: int, out_width: int, scale: int = 4,
                 dims: int = 1) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        net: nn.Module = _block(widths[-1], depth, dims)
        for width, inner_width in zip(widths[-2::-1], widths[:0:-1]):
            net = _Level(width, inner_width, net, depth, scale, dims)
        k = 5 if dims == 1 else 3
        conv = nn.Conv1d if dims == 1 else nn.Conv2d
        self.net = nn.Sequential(wn(conv(in_width, widths[0], k, padding=k // 2)), net,
                                 wn(conv(widths[0], out_width, k, padding=k // 2)))
        self.dims, self.multiple = dims, scale ** (len(widths) - 1)
        self.in_width = int(in_width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dims == 1:
            assert x.shape[-1] % self.multiple == 0, f"length {x.shape[-1]} is not a multiple of {self.multiple}"
            return self.net(x)
        bins = x.shape[-2]
        x = F.pad(x, (0, 0, 0, -bins % self.multiple))
        return self.net(x)[..., :bins, :]


def mel_to_linear_matrix(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> np.ndarray:
    """(n_fft // 2 + 1, n_mels): each linear bin linearly interpolates the two mel bands around it.

    A fixed, parameter-free approximate inverse of the Slaney filter bank on *log* mels (the
    values are interpolated, not de-normalised): bins below the first band's centre take the
    first band, bins above the last take the last. Written by hand: librosa's mel_to_stft is an
    iterative NNLS, not a matrix.
    """
    import librosa

    centres = librosa.mel_frequencies(n_mels + 2, fmin=fmin, fmax=fmax or sample_rate / 2)[1:-1]
    freqs = librosa.fft_frequencies(sr=sample_rate, n_fft=n_fft)
    matrix = np.zeros((len(freqs), n_mels), dtype=np.float32)
    for j in range(n_mels):
        one_hot = np.zeros(n_mels)
        one_hot[j] = 1.0
        matrix[:, j] = np.interp(freqs, centres, one_hot)
    return matrix


class SpectralUNet(nn.Module):
    """HiFi++ SpectralUNet: log mel (B, n_mels, frames) -> (B, out_channels, frames).

    The mel is mapped to the n_fft // 2 + 1 linear bins twice, by a fixed interpolation
    (:func:`mel_to_linear_matrix`) and by a learnable 1x1 Conv1d; [fixed map, positional
    encoding 0..1 over bins, learnable map] go through a 2-D U-Net (scale 2), a 1x1 Conv2d to
    one channel and a 1x1 Conv1d bins -> ``out_channels``. Frames are zero-padded to a power of
    two (at least what the U-Net's levels need) and cropped back.
    """

    def __init__(self, mel: LogMel, widths: Sequence[int], depth: int, out_channels: int) -> None:
        super().__init__()
        bins = mel.n_fft // 2 + 1
        matrix = mel_to_linear_matrix(mel.sample_rate, mel.n_fft, mel.n_mels, mel.fmin, mel.fmax)
        self.register_buffer("mel2lin", torch.from_numpy(matrix), persistent=False)
        self.register_buffer("position", torch.linspace(0, 1, bins)[:, None], persistent=False)
        self.learnable_mel2lin = wn(nn.Conv1d(mel.n_mels, bins, 1))
        self.net = MultiScaleResnet(widths, depth, in_width=3, out_width=widths[0], scale=2, dims=2)
        self.post_2d = wn(nn.Conv2d(widths[0], 1, 1))
        self.post_1d = wn(nn.Conv1d(bins, out_channels, 1))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        frames = mel.shape[-1]
        padded = max(2 ** math.ceil(math.log2(frames)), self.net.multiple)
        mel = F.pad(mel, (0, padded - frames))
        fixed = torch.matmul(self.mel2lin.to(mel.dtype), mel)
        learned = self.learnable_mel2lin(mel)
        position = self.position.to(mel.dtype).expand_as(fixed)
        x = self.net(torch.stack([fixed, position, learned], 1))
        return self.post_1d(self.post_2d(x)[:, 0])[..., :frames]


class SpectralMaskNet(nn.Module):
    """HiFi++ SpectralMaskNet: waveform channels (B, C, T) -> (B, C, T), each channel's complex STFT
    multiplied by a softplus mask predicted from all channels' magnitudes.

    STFT n_fft 1024, hop 256, Hann, centred; the mask covers bins 1.. and frames 1.. (bin 0 and
    frame 0 pass unchanged, as in HiFi++); magnitudes sqrt(re² + im² + 1e-9) go through a 2-D U-Net
    (scale 2) with frames zero-padded on both sides to the multiple its levels need. T must be a
    multiple of ``hop`` (the inverse STFT gives the input length back).
    """

    n_fft, hop = 1024, 256

    def __init__(self, channels: int, widths: Sequence[int], depth: int) -> None:
        super().__init__()
        self.net = MultiScaleResnet(widths, depth, in_width=channels, out_width=channels, scale=2, dims=2)
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t = x.shape
        spec = self._stft(x.reshape(b * c, t))
        mag = (spec.real.square() + spec.imag.square() + 1e-9).sqrt()[:, 1:, 1:]
        mask = self._mask(mag.reshape(b, c, *mag.shape[1:])).reshape(b * c, *mag.shape[1:])
        mask = F.pad(mask.float(), (1, 0, 1, 0), value=1.0)  # bin 0 and frame 0 unmasked
        with torch.autocast(device_type=x.device.type, enabled=False):
            y = torch.istft(spec * mask, self.n_fft, self.hop, window=self.window.float(), center=True, length=t)
        return y.reshape(b, c, t)

    def _stft(self, x: torch.Tensor) -> torch.Tensor:
        # float32 even under autocast: torch's STFT has no bf16 kernel and quiet bins need the range
        with torch.autocast(device_type=x.device.type, enabled=False):
            return torch.stft(x.float(), self.n_fft, self.hop, window=self.window.float(), center=True,
                              return_complex=True)

    def _mask(self, mag: torch.Tensor) -> torch.Tensor:
        frames = mag.shape[-1]
        pad = -frames % self.net.multiple
        left = pad - pad // 2
        out = self.net(F.pad(mag, (left, pad // 2)))
        return F.softplus(out[..., left:left + frames])


class HiFiPlusPlusCore(nn.Module):
    """SpectralUNet -> HiFi backbone -> (WaveUNet + identity skip) -> (SpectralMaskNet + identity skip).

    log mel (B, n_mels, frames) [+ raw wave (B, frames * hop) for ``waveunet_input`` "both"] ->
    waveform channels (B, backbone out channels, frames * hop). ``waveunet_input``: "hifi" (the
    backbone output, as in mel -> wave HiFi++) or "both" (a 1x1 conv over [backbone output, raw
    wave], as in the audio-to-audio models).
    """

    def __init__(self, mel: LogMel, channels: int, spectral_widths: Sequence[int], spectral_depth: int,
                 spectral_out: int, wave_widths: Sequence[int], wave_depth: int, mask_widths: Sequence[int],
                 mask_depth: int, waveunet_input: str, where: str, backbone_in: int | None = None) -> None:
        super().__init__()
        self.spectralunet = SpectralUNet(mel, spectral_widths, spectral_depth, spectral_out)
        self.backbone = HiFiBackbone(backbone_in or spectral_out, channels, (8, 8, 2, 2), (16, 16, 4, 4), "1", (3, 7, 11),
                                     ((1, 3, 5),) * 3, conv_pre_kernel=1, where=where)
        ch = self.backbone.out_channels
        self.waveunet_pre = init_weights(wn(nn.Conv1d(ch + 1, ch, 1))) if waveunet_input == "both" else None
        self.waveunet = MultiScaleResnet(wave_widths, wave_depth, in_width=ch, out_width=ch, scale=4, dims=1)
        self.waveunet_skip = identity_conv1d(ch)
        self.spectralmasknet = SpectralMaskNet(ch, mask_widths, mask_depth)
        self.spectralmasknet_skip = identity_conv1d(ch)
        self.out_channels, self.length_multiple = ch, self.waveunet.multiple

    def vocode(self, x: torch.Tensor, wave: torch.Tensor | None = None) -> torch.Tensor:
        """Backbone input (B, spectral_out, frames) -> waveform channels (B, ch, frames * 256)."""
        x = self.backbone(x)
        if self.waveunet_pre is not None:
            x = self.waveunet_pre(torch.cat([x, wave[:, None]], 1))
        x = self.waveunet(x) + self.waveunet_skip(x)
        return self.spectralmasknet(x) + self.spectralmasknet_skip(x)


def _check_widths(where: str, **widths: Sequence[int]) -> None:
    for name, w in widths.items():
        if len(w) < 1 or min(int(v) for v in w) <= 0:
            raise ConfigError(f"{where}: {name} must be a non-empty list of positive widths, got {list(w)}")


@MODELS.register("hifipp")
class HiFiPlusPlusGenerator(MelVocoder):
    """HiFi++ vocoder: log mel (B, 80, frames) -> wave (B, frames * 256) in [-1, 1] at sample_rate Hz.

    SpectralUNet (``spectralunet_widths``, ``spectralunet_depth``, ``spectralunet_out`` channels) ->
    HiFi backbone (conv_pre kernel 1, ``channels``, rates 8/8/2/2, ResBlock1 3/7/11) -> WaveUNet
    (``waveunet_widths``, ``waveunet_depth``) -> SpectralMaskNet (``spectralmasknet_widths``,
    ``spectralmasknet_depth``) -> conv_post kernel 7 -> tanh. ``mel``: LogMel args for
    ``.features(wave)`` (default n_fft 1024, hop 256, 80 mels, fmax Nyquist, T / 256 frames).
    The number of frames must be a multiple of ``waveunet`` scale^(levels - 1) / 256 (1 with the
    default widths: any frame count works when frames * 256 is a multiple of 64).
    """

    name = "hifipp"

    def __init__(
        self,
        channels: int = 128,
        spectralunet_widths: Sequence[int] = (8, 16, 24, 32, 64),
        spectralunet_depth: int = 5,
        spectralunet_out: int = 128,
        waveunet_widths: Sequence[int] = (10, 20, 40, 80),
        waveunet_depth: int = 4,
        spectralmasknet_widths: Sequence[int] = (8, 12, 24, 32),
        spectralmasknet_depth: int = 4,
        sample_rate: int = 16000,
        mel: dict | None = None,
    ) -> None:
        super().__init__()
        _check_widths("hifipp", spectralunet_widths=spectralunet_widths, waveunet_widths=waveunet_widths,
                      spectralmasknet_widths=spectralmasknet_widths)
        self.hop, self.sample_rate = 256, int(sample_rate)
        self.mel = vocoder_mel("hifipp", self.sample_rate, self.hop, mel)
        self.in_channels = self.mel.n_mels
        self.core = HiFiPlusPlusCore(self.mel, channels, spectralunet_widths, spectralunet_depth, spectralunet_out,
                                     waveunet_widths, waveunet_depth, spectralmasknet_widths, spectralmasknet_depth,
                                     "hifi", "hifipp")
        self.conv_post = init_weights(wn(nn.Conv1d(self.core.out_channels, 1, 7, padding=3)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.ndim != 3 or features.shape[1] != self.in_channels:
            raise ConfigError(f"hifipp: expected a log mel (batch, {self.in_channels}, frames), got "
                              f"{tuple(features.shape)}")
        x = self.core.vocode(self.core.spectralunet(features))
        return torch.tanh(self.conv_post(x))[:, 0]


A2A_MEL = {"n_fft": 1024, "hop_length": 256, "n_mels": 80, "fmin": 0.0, "fmax": 8000.0, "center": False, "pad": 384}


def pad_to_multiple(wave: torch.Tensor, multiple: int, where: str) -> torch.Tensor:
    """(B, T) zero-padded at the end to a multiple of ``multiple`` samples."""
    if wave.ndim != 2:
        raise AudioError(f"{where}: expected audio of shape (batch, time), got {tuple(wave.shape)}")
    if wave.shape[-1] == 0:
        raise AudioError(f"{where}: got empty audio (0 samples)")
    return F.pad(wave, (0, -wave.shape[-1] % multiple))


@MODELS.register("a2a_hifipp")
class A2AHiFiPlusPlus(nn.Module):
    """Audio-to-audio HiFi++ (denoising, bandwidth extension): wave (B, T) at 16 kHz -> wave (B, T) in [-1, 1].

    Log mel (n_fft 1024, hop 256, 80 mels, 0-8 kHz, reflect pad 384 with center=false) ->
    SpectralUNet -> HiFi backbone (``channels``, out channels / 16) -> WaveUNet over a 1x1 conv of
    [backbone output, input wave] -> SpectralMaskNet -> conv_post kernel 7 -> tanh; 1.71M parameters
    with the defaults. Any length: the input is zero-padded at the end to a multiple of 1024
    samples and the output cropped back to T (the original code trims the input to a multiple of
    1024 instead, dropping up to 1023 samples).
    """

    def __init__(
        self,
        channels: int = 128,
        spectralunet_widths: Sequence[int] = (8, 16, 24, 32, 64),
        spectralunet_depth: int = 5,
        spectralunet_out: int = 128,
        waveunet_widths: Sequence[int] = (10, 20, 40, 80),
        waveunet_depth: int = 4,
        spectralmasknet_widths: Sequence[int] = (8, 12, 24, 32),
        spectralmasknet_depth: int = 4,
    ) -> None:
        super().__init__()
        _check_widths("a2a_hifipp", spectralunet_widths=spectralunet_widths, waveunet_widths=waveunet_widths,
                      spectralmasknet_widths=spectralmasknet_widths)
        self.sample_rate = self.input_rate = 16000
        self.mel = LogMel(sample_rate=16000, **A2A_MEL)
        self.core = HiFiPlusPlusCore(self.mel, channels, spectralunet_widths, spectralunet_depth, spectralunet_out,
                                     waveunet_widths, waveunet_depth, spectralmasknet_widths, spectralmasknet_depth,
                                     "both", "a2a_hifipp")
        self.conv_post = init_weights(wn(nn.Conv1d(self.core.out_channels, 1, 7, padding=3)))
        self.length_multiple = math.lcm(1024, self.core.length_multiple)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        length = wave.shape[-1]
        x = pad_to_multiple(wave, self.length_multiple, "a2a_hifipp")
        h = self.core.vocode(self.core.spectralunet(self.mel(x)), x)
        return torch.tanh(self.conv_post(h))[:, 0, :length]


__all__ = ["A2AHiFiPlusPlus", "HiFiPlusPlusCore", "HiFiPlusPlusGenerator", "MultiScaleResnet", "SpectralMaskNet",
           "SpectralUNet", "mel_to_linear_matrix", "pad_to_multiple", "A2A_MEL"]
