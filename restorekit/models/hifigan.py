"""HiFi-GAN generator (Kong et al., NeurIPS 2020) and the blocks the HiFi++ / FINALLY generators share.

The generator: conv_pre -> per stage (LeakyReLU 0.1 -> transposed conv upsampling -> multi-receptive
field fusion: the mean of ResBlocks with kernels 3/7/11) -> LeakyReLU 0.01 -> conv_post -> tanh.
Weight norm on every conv (``torch.nn.utils.parametrizations.weight_norm``) and conv weights drawn
from N(0, 0.01) by :func:`init_weights`, which sets the weight *through* the weight-norm
parametrisation: the original code sets ``weight.data`` after the old-style ``weight_norm``, which
recomputes ``weight`` from ``weight_g``/``weight_v`` at the next forward, so its init did nothing.
Written here (transformers ships no HiFi-GAN generator with mel framing and these options).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from restorekit.errors import ConfigError
from restorekit.mel import LogMel
from restorekit.models import MODELS

LRELU_SLOPE = 0.1
INIT_STD = 0.01
_CONVS = (nn.Conv1d, nn.Conv2d, nn.ConvTranspose1d, nn.ConvTranspose2d)


def init_weights(module: nn.Module, std: float = INIT_STD) -> nn.Module:
    """Draw every conv weight inside ``module`` from N(0, ``std``), through weight norm; returns it.

    Assigning to a parametrised ``weight`` runs weight norm's right inverse (g = |w|, v = w), so
    the effective weight really is the drawn one. Biases keep PyTorch's default.
    """
    for m in module.modules():
        if isinstance(m, _CONVS):
            with torch.no_grad():
                drawn = torch.randn_like(m.weight) * std
                if parametrize.is_parametrized(m, "weight"):
                    m.weight = drawn
                else:
                    m.weight.copy_(drawn)
    return module


def wn(conv: nn.Module) -> nn.Module:
    """``conv`` with weight norm (magnitude per output channel)."""
    return weight_norm(conv)


def wn_conv1d(cin: int, cout: int, kernel: int, dilation: int = 1) -> nn.Module:
    """Weight-normed 'same' Conv1d (odd ``kernel``), stride 1."""
    return wn(nn.Conv1d(cin, cout, kernel, padding=dilation * (kernel - 1) // 2, dilation=dilation))


def identity_conv1d(channels: int) -> nn.Module:
    """Weight-normed 1x1 Conv1d initialised to the identity (a skip path that starts transparent)."""
    conv = nn.Conv1d(channels, channels, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(channels)[:, :, None])
        conv.bias.zero_()
    return wn(conv)


class ResBlock1(nn.Module):
    """HiFi-GAN ResBlock1: per dilation, LeakyReLU -> dilated conv -> LeakyReLU -> conv -> residual add.

    x (B, channels, L) -> (B, channels, L).
    """

    def __init__(self, channels: int, kernel_size: int = 3, dilations: Sequence[int] = (1, 3, 5)) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList([wn_conv1d(channels, channels, kernel_size, d) for d in dilations])
        self.convs2 = nn.ModuleList([wn_conv1d(channels, channels, kernel_size) for _ in dilations])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c1, c2 in zip(self.convs1, self.convs2):
            x = x + c2(F.leaky_relu(c1(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
        return x


class ResBlock2(nn.Module):
    """HiFi-GAN ResBlock2: per dilation, LeakyReLU -> dilated conv -> residual add. (B, C, L) -> (B, C, L)."""

    def __init__(self, channels: int, kernel_size: int = 3, dilations: Sequence[int] = (1, 3)) -> None:
        super().__init__()
        self.convs = nn.ModuleList([wn_conv1d(channels, channels, kernel_size, d) for d in dilations])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = x + conv(F.leaky_relu(x, LRELU_SLOPE))
        return x


_RESBLOCKS = {"1": ResBlock1, "2": ResBlock2}


class HiFiBackbone(nn.Module):
    """HiFi-GAN body without its output conv: x (B, in_channels, frames) -> (B, channels / 2^S, frames * hop).

    conv_pre (``conv_pre_kernel``) -> S stages of LeakyReLU 0.1, transposed conv (rate u, kernel k,
    padding (k - u) / 2, channels halved) and the mean of the stage's ResBlocks -> LeakyReLU 0.01.
    """

    def __init__(
        self, in_channels: int, channels: int, upsample_rates: Sequence[int], upsample_kernel_sizes: Sequence[int],
        resblock: str, resblock_kernel_sizes: Sequence[int], resblock_dilations: Sequence[Sequence[int]],
        conv_pre_kernel: int = 7, where: str = "hifigan",
    ) -> None:
        super().__init__()
        _check_backbone(where, channels, upsample_rates, upsample_kernel_sizes, resblock, resblock_kernel_sizes,
                        resblock_dilations, conv_pre_kernel)
        self.hop = math.prod(int(u) for u in upsample_rates)
        self.conv_pre = wn_conv1d(in_channels, channels, conv_pre_kernel)
        self.ups, self.resblocks = nn.ModuleList(), nn.ModuleList()
        block = _RESBLOCKS[str(resblock)]
        for i, (u, k) in enumerate(zip(upsample_rates, upsample_kernel_sizes)):
            cin, cout = channels // 2**i, channels // 2 ** (i + 1)
            self.ups.append(wn(nn.ConvTranspose1d(cin, cout, k, u, padding=(k - u) // 2)))
            self.resblocks.append(nn.ModuleList(
                [block(cout, rk, rd) for rk, rd in zip(resblock_kernel_sizes, resblock_dilations)]))
        self.out_channels = channels // 2 ** len(upsample_rates)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_pre(x)
        for up, blocks in zip(self.ups, self.resblocks):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            x = sum(b(x) for b in blocks) / len(blocks)  # multi-receptive field fusion
        return F.leaky_relu(x, 0.01)  # HiFi-GAN's final activation uses the default slope


def _check_backbone(where: str, channels: int, rates: Sequence[int], kernels: Sequence[int], resblock: str,
                    rb_kernels: Sequence[int], rb_dilations: Sequence[Sequence[int]], conv_pre_kernel: int) -> None:
    if len(rates) != len(kernels) or not rates:
        raise ConfigError(f"{where}: upsample_rates {list(rates)} and upsample_kernel_sizes {list(kernels)} must be "
                          "non-empty lists of the same length (one transposed conv per rate)")
    bad = [(u, k) for u, k in zip(rates, kernels) if k < u or (k - u) % 2]
    if bad:
        raise ConfigError(f"{where}: upsample kernel k and rate u need k >= u and k - u even so that each stage "
                          f"multiplies the length exactly by u; got (u, k) = {bad}, e.g. k = 2u")
    if channels % 2 ** len(rates):
        raise ConfigError(f"{where}: channels={channels} must be divisible by 2^{len(rates)} (halved per stage)")
    if str(resblock) not in _RESBLOCKS:
        raise ConfigError(f"{where}: resblock must be \"1\" or \"2\", got {resblock!r}")
    if len(rb_kernels) != len(rb_dilations) or not rb_kernels:
        raise ConfigError(f"{where}: resblock_kernel_sizes {list(rb_kernels)} and resblock_dilations "
                          f"{[list(d) for d in rb_dilations]} must be non-empty and of the same length")
    if conv_pre_kernel % 2 == 0:
        raise ConfigError(f"{where}: conv_pre kernel {conv_pre_kernel} must be odd ('same' padding)")


def vocoder_mel(where: str, sample_rate: int, hop: int, mel: Mapping[str, Any] | None,
                defaults: Mapping[str, Any] | None = None) -> LogMel:
    """The LogMel of a mel vocoder: n_fft 1024, ``hop``, 80 mels, HiFi-GAN framing (T / hop frames).

    ``center=False`` with a reflect pad of (n_fft - hop) / 2 each side makes frame ``j`` pair with
    samples [j * hop, (j + 1) * hop): a trainer can cut mel and audio sample-exactly.
    """
    args: dict[str, Any] = {"n_fft": 1024, "hop_length": hop, "n_mels": 80, **(defaults or {}), **(mel or {})}
    if int(args["hop_length"]) != hop:
        raise ConfigError(f"{where}: mel.hop_length={args['hop_length']} must equal the product of upsample_rates "
                          f"({hop}): one mel frame becomes hop samples")
    if "center" not in args and "pad" not in args:
        if (int(args["n_fft"]) - hop) % 2:
            raise ConfigError(f"{where}: mel n_fft - hop_length must be even for T / hop framing; got "
                              f"{args['n_fft']} - {hop}")
        args.update(center=False, pad=(int(args["n_fft"]) - hop) // 2)
    try:
        return LogMel(sample_rate=sample_rate, **args)
    except TypeError as exc:
        raise ConfigError(f"{where}: mel has an unknown key ({exc}); accepted: n_fft, hop_length, win_length, "
                          "n_mels, fmin, fmax, center, pad, mag_eps, log_floor") from exc


class MelVocoder(nn.Module):
    """Shared interface of the mel -> wave generators: ``.features(wave)``, ``.hop``, ``.sample_rate``."""

    mel: LogMel
    hop: int
    sample_rate: int
    in_channels: int
    name: str = "vocoder"

    def features(self, wave: torch.Tensor) -> torch.Tensor:
        """Log mel the generator reads: wave (B, T) -> (B, n_mels, frames); T / hop frames with the
        default framing when T is a multiple of hop."""
        if self.mel.n_mels != self.in_channels:
            raise ConfigError(
                f"{self.name}: features() computes a {self.mel.n_mels}-bin log mel but the generator reads "
                f"in_channels={self.in_channels}; give the generator its own features (e.g. SSL features) "
                f"or set mel.n_mels to {self.in_channels}"
            )
        return self.mel(wave)


@MODELS.register("hifigan")
class HiFiGANGenerator(MelVocoder):
    """HiFi-GAN generator: features (B, in_channels, frames) -> wave (B, frames * hop) in [-1, 1] at sample_rate Hz.

    V1: ``channels`` 512 (13.94M parameters), V2: 128 (0.93M); V3: ``resblock`` "2", channels 256,
    rates [8, 8, 4], kernels [16, 16, 8], resblock kernels [3, 5, 7], dilations [[1, 2], [2, 6], [3, 12]].
    ``upsample_rates`` (product = hop, samples per frame) and ``upsample_kernel_sizes`` (k - u even);
    ``resblock`` "1" (three dilated conv pairs) or "2"; one ResBlock per entry of
    ``resblock_kernel_sizes`` / ``resblock_dilations``, averaged. ``in_channels`` may be any
    feature size (e.g. 1024-d SSL features). ``mel``: LogMel args for ``.features(wave)``
    (default n_fft 1024, hop = prod(rates), 80 mels, fmax Nyquist, reflect pad (n_fft - hop) / 2
    with center=false: T / hop frames, so ``generator(generator.features(x))`` has x's length).
    """

    name = "hifigan"

    def __init__(
        self,
        in_channels: int = 80,
        channels: int = 512,
        upsample_rates: Sequence[int] = (8, 8, 2, 2),
        upsample_kernel_sizes: Sequence[int] = (16, 16, 4, 4),
        resblock: str = "1",
        resblock_kernel_sizes: Sequence[int] = (3, 7, 11),
        resblock_dilations: Sequence[Sequence[int]] = ((1, 3, 5), (1, 3, 5), (1, 3, 5)),
        sample_rate: int = 16000,
        mel: dict | None = None,
    ) -> None:
        super().__init__()
        self.backbone = HiFiBackbone(in_channels, channels, upsample_rates, upsample_kernel_sizes, resblock,
                                     resblock_kernel_sizes, resblock_dilations, conv_pre_kernel=7)
        self.conv_post = init_weights(wn_conv1d(self.backbone.out_channels, 1, 7))
        self.in_channels, self.hop, self.sample_rate = int(in_channels), self.backbone.hop, int(sample_rate)
        self.mel = vocoder_mel("hifigan", self.sample_rate, self.hop, mel)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.ndim != 3 or features.shape[1] != self.in_channels:
            raise ConfigError(f"hifigan: expected features (batch, {self.in_channels}, frames), got "
                              f"{tuple(features.shape)}")
        return torch.tanh(self.conv_post(self.backbone(features)))[:, 0]


__all__ = ["HiFiGANGenerator", "HiFiBackbone", "ResBlock1", "ResBlock2", "init_weights", "identity_conv1d",
           "wn", "wn_conv1d", "vocoder_mel", "MelVocoder", "LRELU_SLOPE"]
