"""GAN discriminators for waveform vocoders: multi-period, multi-scale, multi-scale STFT.

Each takes audio (B, T) and returns ``(logits, feature_maps)``: one logit tensor per
sub-discriminator and, for each, the list of its intermediate activations (for feature
matching). Written by hand after HiFi-GAN (MPD, MSD) and EnCodec (MS-STFT); no installable
library exposes them as modules.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

from restorekit.errors import ConfigError
from restorekit.models import MODELS

Output = tuple[list[torch.Tensor], list[list[torch.Tensor]]]


def _run(layers: nn.ModuleList, post: nn.Module, x: torch.Tensor, slope: float = 0.1,
         post_in_maps: bool = True) -> tuple[torch.Tensor, list[torch.Tensor]]:
    maps = []
    for layer in layers:
        x = F.leaky_relu(layer(x), slope)
        maps.append(x)
    x = post(x)
    if post_in_maps:
        maps.append(x)
    return x.flatten(1), maps


class PeriodDiscriminator(nn.Module):
    """HiFi-GAN period sub-discriminator: audio folded into (T/p, p) and 2-D convolved."""

    def __init__(self, period: int, channels: Sequence[int]) -> None:
        super().__init__()
        self.period = period
        cins = [1, *channels[:-1]]
        self.layers = nn.ModuleList(
            weight_norm(nn.Conv2d(ci, co, (5, 1), (3 if i < len(channels) - 1 else 1, 1), (2, 0)))
            for i, (ci, co) in enumerate(zip(cins, channels))
        )
        self.post = weight_norm(nn.Conv2d(channels[-1], 1, (3, 1), 1, (1, 0)))

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        pad = (-wave.shape[-1]) % self.period
        x = F.pad(wave[:, None], (0, pad), mode="reflect" if pad < wave.shape[-1] else "constant")
        return _run(self.layers, self.post, x.view(x.shape[0], 1, -1, self.period))


@MODELS.register("mpd")
class MultiPeriodDiscriminator(nn.Module):
    """HiFi-GAN multi-period discriminator: audio (B, T) -> (logits per period, feature maps per period).

    ``periods``: fold lengths in samples; ``channels``: conv channels per layer.
    """

    def __init__(self, periods: Sequence[int] = (2, 3, 5, 7, 11),
                 channels: Sequence[int] = (32, 128, 512, 1024, 1024)) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, list(channels)) for p in periods)

    def forward(self, wave: torch.Tensor) -> Output:
        outs = [d(wave) for d in self.discriminators]
        return [o[0] for o in outs], [o[1] for o in outs]


class ScaleDiscriminator(nn.Module):
    """HiFi-GAN scale sub-discriminator: one row of (channels, kernel, stride, groups) per 1-D conv,
    "same" padding (kernel // 2), then a 3-tap conv to one channel. ``spectral`` selects spectral
    norm (HiFi-GAN's first scale) instead of weight norm."""

    def __init__(self, channels: Sequence[int], kernels: Sequence[int], strides: Sequence[int],
                 groups: Sequence[int], spectral: bool) -> None:
        super().__init__()
        norm = spectral_norm if spectral else weight_norm
        cins = [1, *channels[:-1]]
        self.layers = nn.ModuleList(
            norm(nn.Conv1d(ci, co, k, s, k // 2, groups=g))
            for ci, co, k, s, g in zip(cins, channels, kernels, strides, groups)
        )
        self.post = norm(nn.Conv1d(channels[-1], 1, 3, 1, 1))

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return _run(self.layers, self.post, wave[:, None])


@MODELS.register("msd")
class MultiScaleDiscriminator(nn.Module):
    """HiFi-GAN multi-scale discriminator: audio (B, T) -> (logits per scale, feature maps per scale).

    Scale i sees the audio average-pooled i times (window 4, stride 2, padding 2). Every scale has
    the same layer table, one entry per conv in ``channels``, ``kernel_sizes``, ``strides`` and
    ``groups``; the defaults are HiFi-GAN's (64x downsampling in all). The first scale uses spectral
    norm, the others weight norm, as in HiFi-GAN. ``same_scale``: every scale sees the audio at its
    own rate (no pooling), as HiFi++ trains its MSD; the scales then differ only in their weights.
    """

    def __init__(self, scales: int = 3, channels: Sequence[int] = (128, 128, 256, 512, 1024, 1024, 1024),
                 kernel_sizes: Sequence[int] = (15, 41, 41, 41, 41, 41, 5),
                 strides: Sequence[int] = (1, 2, 2, 4, 4, 1, 1),
                 groups: Sequence[int] = (1, 4, 16, 16, 16, 16, 1), same_scale: bool = False) -> None:
        super().__init__()
        table = list(channels), list(kernel_sizes), list(strides), list(groups)
        _check_scale_table(*table)
        self.same_scale = bool(same_scale)
        # HiFi-GAN puts spectral norm on the first (raw-rate) scale only
        self.discriminators = nn.ModuleList(ScaleDiscriminator(*table, spectral=not i) for i in range(scales))

    def forward(self, wave: torch.Tensor) -> Output:
        logits, maps = [], []
        for i, d in enumerate(self.discriminators):
            if i and not self.same_scale:
                wave = F.avg_pool1d(wave[:, None], 4, 2, padding=2)[:, 0]
            logit, fmap = d(wave)
            logits.append(logit)
            maps.append(fmap)
        return logits, maps


def _check_scale_table(channels: list[int], kernels: list[int], strides: list[int],
                       groups: list[int]) -> None:
    if not channels or not len(channels) == len(kernels) == len(strides) == len(groups):
        raise ConfigError(
            f"msd: channels ({len(channels)}), kernel_sizes ({len(kernels)}), strides ({len(strides)}) and "
            f"groups ({len(groups)}) must have one entry per layer; give all four lists the same length"
        )
    for i, (ci, co, g) in enumerate(zip([1, *channels[:-1]], channels, groups)):
        if ci % g or co % g:
            raise ConfigError(
                f"msd: layer {i} has groups {g}, which must divide its in ({ci}) and out ({co}) channels; "
                "change models.discriminators.args.groups or channels"
            )


class STFTDiscriminator(nn.Module):
    """EnCodec-style sub-discriminator on the complex STFT (real and imaginary as 2 channels)."""

    def __init__(self, n_fft: int, channels: int, depth: int, normalized: bool, center: bool,
                 slope: float, post_in_maps: bool) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, n_fft // 4
        self.normalized, self.center, self.slope, self.post_in_maps = normalized, center, slope, post_in_maps
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        convs = [nn.Conv2d(2, channels, (3, 9), padding=(1, 4))]
        for i in range(depth):
            dil = 2**i
            convs.append(nn.Conv2d(channels, channels, (3, 9), (1, 2), padding=(dil, 4), dilation=(dil, 1)))
        convs.append(nn.Conv2d(channels, channels, (3, 3), padding=(1, 1)))
        self.layers = nn.ModuleList(weight_norm(c) for c in convs)
        self.post = weight_norm(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        window = self.window.to(wave.dtype)
        spec = torch.stft(wave, self.n_fft, self.hop, window=window, center=self.center, return_complex=True)
        if self.normalized:  # EnCodec's "window" normalisation: divide by the window's L2 norm
            spec = spec / window.square().sum().sqrt()
        x = torch.view_as_real(spec).permute(0, 3, 2, 1)  # (B, 2, frames, freq)
        return _run(self.layers, self.post, x, self.slope, self.post_in_maps)


def encodec_fft_sizes(sample_rate: int, scales: int = 5) -> list[int]:
    """EnCodec's STFT scales for a rate: the largest is 2048 at 16 kHz (4096 at 48 kHz), halving down.

    The largest FFT doubles each time the rate doubles from 16 kHz (2048 at 16 and 24 kHz, 4096 at
    32 to 48 kHz), as the FINALLY recipe uses 2048..128 at 16 kHz and 4096..256 at 48 kHz.
    """
    largest = 2048 * 2 ** max(0, math.floor(math.log2(sample_rate / 16000)))
    return [largest >> i for i in range(scales)]


@MODELS.register("ms_stft")
class MultiScaleSTFTDiscriminator(nn.Module):
    """Multi-scale STFT discriminator (EnCodec): audio (B, T) -> (logits per FFT size, feature maps per FFT size).

    ``fft_sizes`` in samples (window = FFT size, hop = size / 4); null: EnCodec's five scales for
    ``sample_rate`` (2048..128 at 16 kHz, 4096..256 at 48 kHz). ``channels`` per conv (EnCodec and
    Mimi 32, FINALLY 64), ``depth`` dilated layers (dilations 1, 2, 4, ...). The defaults keep
    restorekit's earlier discriminator; EnCodec's (and FINALLY's) is ``normalized: true`` (STFT
    divided by the window's L2 norm), ``center: false``, ``negative_slope: 0.2`` and
    ``post_in_maps: false`` (feature maps are the activations, not the output).
    """

    def __init__(self, fft_sizes: Sequence[int] | None = (2048, 1024, 512), channels: int = 32, depth: int = 3,
                 sample_rate: int | None = None, normalized: bool = False, center: bool = True,
                 negative_slope: float = 0.1, post_in_maps: bool = True) -> None:
        super().__init__()
        if fft_sizes is None:
            if sample_rate is None:
                raise ConfigError("ms_stft: fft_sizes is null, so sample_rate must be set to pick EnCodec's scales "
                                  "(e.g. sample_rate: 16000 for 2048..128)")
            fft_sizes = encodec_fft_sizes(int(sample_rate))
        opts = dict(normalized=normalized, center=center, slope=negative_slope, post_in_maps=post_in_maps)
        self.fft_sizes = [int(n) for n in fft_sizes]
        self.discriminators = nn.ModuleList(STFTDiscriminator(n, channels, depth, **opts) for n in self.fft_sizes)

    def forward(self, wave: torch.Tensor) -> Output:
        outs = [d(wave) for d in self.discriminators]
        return [o[0] for o in outs], [o[1] for o in outs]


@MODELS.register("discriminator_set")
class DiscriminatorSet(nn.Module):
    """Several discriminators as one: audio (B, T) -> (all members' logits, all members' feature maps), concatenated.

    ``members`` is a list of discriminator nodes, e.g. ``[{name: mpd}, {name: ms_stft}]``, so one
    ``discriminators`` role can hold the HiFi-GAN pair or any mix.
    """

    def __init__(self, members: Sequence[dict]) -> None:
        super().__init__()
        if not members:
            raise ConfigError("discriminator_set: members is empty; list at least one discriminator node")
        self.members = nn.ModuleList(
            MODELS.build(m, where=f"models.discriminators.args.members[{i}]") for i, m in enumerate(members)
        )

    def forward(self, wave: torch.Tensor) -> Output:
        logits, maps = [], []
        for member in self.members:
            lg, fm = member(wave)
            logits += lg
            maps += fm
        return logits, maps
