"""WaveFit-T vocoder conditioned on SSL features (Koizumi et al. 2022; Miipher-2 variant).

WaveFit refines a noise signal T times with one WaveGrad-base network F shared across
iterations: ``z = y_t - F(y_t, c, t)``, then a gain adjustment scales z so its power equals the
power predicted from the conditioning c, giving ``y_{t-1}``. All T outputs are returned for
training (every one is supervised); inference keeps the last. Written by hand: no library ships
WaveFit or WaveGrad's generator.

The Miipher-2 memory-efficient variant (``memory_efficient: true``) repeats feature frames
instead of a transposed-convolution pre-upsampler, drops the FiLM on the full-rate block (the
one processing the longest signal) and uses shift-only FiLM elsewhere.

An optional Conformer pre-net reads the features before the generator. Open-Miipher-2 repeats
Gemma 3n's 25 Hz frames x4 (``upsample_mode: nearest``) and runs 4 blocks at 100 Hz
(``feature_interpolation: repeat``, ``prenet.position: after_interpolation``); Atotti/miipher-2's
HiFi-GAN variant runs 2 blocks at the feature rate, then interpolates linearly
(``feature_interpolation: linear``, ``prenet.position: before_interpolation``).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from restorekit.errors import ConfigError
from restorekit.models import MODELS
from restorekit.models.conformer import Conformer

_NOISE_KINDS = ("white", "shaped")
_INTERPOLATIONS = ("repeat", "linear", "transposed_conv")
_PRENET_POSITIONS = ("after_interpolation", "before_interpolation")
_PRENET_DEFAULTS: dict[str, Any] = {"layers": 0, "dim": None, "heads": 8, "ffn_dim": None, "kernel_size": 31,
                                    "dropout": 0.0, "position": "after_interpolation"}


def _conv(cin: int, cout: int, k: int = 3, dilation: int = 1) -> nn.Conv1d:
    return nn.Conv1d(cin, cout, k, padding=dilation * (k - 1) // 2, dilation=dilation)


def conv_any(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """``conv`` on (B, C, L), or on (B, C, 1, L) as the same 2-d convolution: the inference layout.

    oneDNN runs 1-d convolutions with 128-512 channels over 10^5 samples 1.2-2.8x faster as
    channels-last 2-d ones (benchmarks/README.md); the weights stay the module's own (nothing to
    convert at load or export), viewed (C_out, C_in, 1, k).
    """
    if x.ndim == 3:
        return conv(x)
    return F.conv2d(x, conv.weight.unsqueeze(2), conv.bias, stride=(1, conv.stride[0]),
                    padding=(0, conv.padding[0]), dilation=(1, conv.dilation[0]))


class ValidMask:
    """Which time steps of a padded batch are real, at every rate of the generator.

    ``units`` (B,) holds each item's length at the coarsest rate (conditioning frames); every
    rate the generator runs at is a whole multiple of it, so an item's length at rate L is
    ``units * L / total``. ``__call__`` zeroes the padding of (B, C, [1,] L) activations: put
    before every convolution, it makes each item see zeros past its end, exactly as when it runs
    alone (where the convolution's own zero padding is what it sees).
    """

    def __init__(self, units: torch.Tensor, total: int) -> None:
        self.units, self.total = units, total
        self._masks: dict[tuple[int, int], torch.Tensor] = {}

    def length(self, size: int) -> torch.Tensor:
        """(B,) valid steps at a rate where the padded batch has ``size`` steps."""
        return self.units * (size // self.total)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        key = (x.shape[-1], x.ndim)
        if torch.compiler.is_compiling():  # traced once per graph; Inductor fuses it into its neighbours
            return x * self._mask(x)
        if key not in self._masks:
            self._masks[key] = self._mask(x)
        return x * self._masks[key]

    def _mask(self, x: torch.Tensor) -> torch.Tensor:
        steps = torch.arange(x.shape[-1], device=x.device)
        mask = (steps[None, :] < self.length(x.shape[-1])[:, None]).to(x.dtype)
        return mask.view(x.shape[0], 1, *([1] * (x.ndim - 3)), x.shape[-1])


def _mask(valid: ValidMask | None, x: torch.Tensor) -> torch.Tensor:
    return x if valid is None else valid(x)


def _upsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Nearest-neighbour upsampling of the last axis, (B, C, [1,] L) -> (B, C, [1,] L * factor)."""
    scale = factor if x.ndim == 3 else (1, factor)
    return F.interpolate(x, scale_factor=scale, mode="nearest")


def iteration_embedding(t: int | torch.Tensor, dim: int, device: torch.device) -> torch.Tensor:
    """Sinusoidal embedding (dim,) of the iteration index, as WaveGrad embeds its noise level (``t`` an
    int, or a 0-d tensor so one compiled graph serves every iteration)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=device) / max(half - 1, 1))
    angle = (t + 1) * 100.0 * freqs  # spread small integer indices over the frequencies
    return torch.cat([angle.sin(), angle.cos()])


class FiLM(nn.Module):
    """From noise-path features (B, C_in, L) and the iteration: shift (and scale) for a UBlock."""

    def __init__(self, cin: int, cout: int, emb_dim: int, shift_only: bool) -> None:
        super().__init__()
        self.shift_only, self.emb_dim = shift_only, emb_dim
        self.inp, self.emb = _conv(cin, cin), nn.Linear(emb_dim, cin)
        self.out = _conv(cin, cout if shift_only else 2 * cout)

    def forward(self, h: torch.Tensor, t: int | torch.Tensor, valid: ValidMask | None = None,
                inplace: bool = False) -> tuple[torch.Tensor | None, torch.Tensor]:
        """``inplace`` (inference only, no autograd): the sum and activation overwrite the convolution's
        fresh output instead of allocating new tensors; the same values."""
        emb = self.emb(iteration_embedding(t, self.emb_dim, h.device).to(h.dtype)).view(1, -1, *([1] * (h.ndim - 2)))
        h = conv_any(self.inp, _mask(valid, h))
        h = h.add_(emb) if inplace else h + emb
        out = conv_any(self.out, _mask(valid, _leaky(h, inplace)))
        if self.shift_only:
            return None, out
        scale, shift = out.chunk(2, dim=1)
        return scale, shift


def _modulate(x: torch.Tensor, film: tuple[torch.Tensor | None, torch.Tensor] | None) -> torch.Tensor:
    if film is None:
        return x
    scale, shift = film
    return x + shift if scale is None else x * scale + shift


def _leaky(x: torch.Tensor, inplace: bool) -> torch.Tensor:
    """leaky_relu(x, 0.2), overwriting ``x`` when ``inplace`` (a fresh tensor at inference)."""
    return F.leaky_relu_(x, 0.2) if inplace else F.leaky_relu(x, 0.2)


def _act(h: torch.Tensor, film: tuple | None, inplace: bool) -> torch.Tensor:
    """leaky_relu(modulate(h, film)); ``inplace``: the activation overwrites the modulated sum (never h)."""
    x = _modulate(h, film)
    return _leaky(x, inplace and x is not h)


class UBlock(nn.Module):
    """WaveGrad upsampling block: x (B, C_in, L) -> (B, C_out, L * factor), FiLM-modulated."""

    def __init__(self, cin: int, cout: int, factor: int) -> None:
        super().__init__()
        self.factor = factor
        self.skip = nn.Conv1d(cin, cout, 1)
        self.c1, self.c2 = _conv(cin, cout), _conv(cout, cout, dilation=2)
        self.c3, self.c4 = _conv(cout, cout, dilation=4), _conv(cout, cout, dilation=8)

    def forward(self, x: torch.Tensor, film: tuple | None, valid: ValidMask | None = None,
                polyphase: bool = False) -> torch.Tensor:
        """``polyphase`` (inference): ``c1`` at the input rate, same sums rounded differently, and sums and
        activations written over fresh tensors (no autograd there) instead of allocating more."""
        x = _mask(valid, x)
        if not polyphase or self.factor < 2:
            h = conv_any(self.c1, F.leaky_relu(_upsample(x, self.factor), 0.2))
        else:
            h = self._c1_polyphase(F.leaky_relu(x, 0.2))
        # The 1x1 skip commutes with nearest upsampling: run it at the input rate (factor x fewer MACs).
        skip = _upsample(conv_any(self.skip, x), self.factor)
        h = conv_any(self.c2, _mask(valid, _act(h, film, polyphase)))
        h = h.add_(skip) if polyphase else h + skip
        h2 = conv_any(self.c3, _mask(valid, _act(h, film, polyphase)))
        out = conv_any(self.c4, _mask(valid, _act(h2, film, polyphase)))
        return out.add_(h) if polyphase else h + out  # float addition commutes: the same sums

    def _c1_polyphase(self, x: torch.Tensor) -> torch.Tensor:
        """``c1`` (3 taps) of ``x`` (B, C, 1, L) upsampled x factor by repetition, computed at the input rate.

        Output phase r of input step j reads x[j-1], x[j], x[j+1] through taps w0, w1, w2; inside a
        run of repeats all three see x[j], so phases 0 < r < factor-1 are (w0+w1+w2) x[j], phase 0
        is w0 x[j-1] + (w1+w2) x[j] and the last is (w0+w1) x[j] + w2 x[j+1]: 5 taps per input step
        instead of 3 x factor (the same sums, rounded differently). Written by hand: no library
        fuses nearest upsampling into a convolution.
        """
        conv, w, b = F.conv1d, self.c1.weight, self.c1.bias  # (C_out, C_in, 3)
        if x.ndim == 4:
            conv, w = F.conv2d, w.unsqueeze(2)
        w0, w1, w2 = w[..., 0:1], w[..., 1:2], w[..., 2:3]
        first = conv(F.pad(x, (1, 0)), torch.cat([w0, w1 + w2], -1), b)
        last = conv(F.pad(x, (0, 1)), torch.cat([w0 + w1, w2], -1), b)
        middle = conv(x, w0 + w1 + w2, b) if self.factor > 2 else None  # the same for every inner phase
        if x.ndim == 3:
            phases = [first] + [middle] * (self.factor - 2) + [last]
            return torch.stack(phases, dim=-1).flatten(-2)  # (B, C_out, L * factor)
        # Channels-last: interleave the phases straight into the output's memory, (B, 1, L, factor, C_out),
        # one copy (stacking, then making it channels-last, moved every sample twice, transposing).
        (batch, _, _, length), channels = x.shape, w.shape[0]
        out = torch.empty(batch, 1, length, self.factor, channels, dtype=first.dtype, device=x.device)
        out[:, :, :, 0] = first.permute(0, 2, 3, 1)
        if middle is not None:
            out[:, :, :, 1:-1] = middle.permute(0, 2, 3, 1).unsqueeze(3)
        out[:, :, :, -1] = last.permute(0, 2, 3, 1)
        return out.view(batch, 1, length * self.factor, channels).permute(0, 3, 1, 2)  # (B, C_out, 1, L * factor)


class DBlock(nn.Module):
    """WaveGrad downsampling block: (B, C_in, L) -> (B, C_out, L / factor)."""

    def __init__(self, cin: int, cout: int, factor: int) -> None:
        super().__init__()
        self.down = nn.Conv1d(cin, cin, 2 * factor + 1, stride=factor, padding=factor)
        self.skip = nn.Conv1d(cin, cout, 1)
        self.convs = nn.ModuleList([_conv(cin, cout, dilation=1), _conv(cout, cout, dilation=2),
                                    _conv(cout, cout, dilation=4)])

    def forward(self, x: torch.Tensor, valid: ValidMask | None = None, inplace: bool = False) -> torch.Tensor:
        """``inplace`` (inference only): activations and the sum overwrite fresh tensors; the same values."""
        h = conv_any(self.down, _mask(valid, x))
        res = conv_any(self.skip, h)
        for conv in self.convs:  # h is a convolution's output here, read by nothing else after the skip
            h = conv_any(conv, _mask(valid, _leaky(h, inplace)))
        return h.add_(res) if inplace else h + res


@MODELS.register("wavefit")
class WaveFit(nn.Module):
    """WaveFit-T vocoder: SSL features (B, frames, feature_dim) -> T waveforms (B, frames * hop) at sample_rate Hz.

    Conditioning: a 3-tap conv to ``cond_channels``, then x ``pre_upsample`` by
    ``feature_interpolation``: ``repeat`` (frame repetition), ``linear`` (F.interpolate, linear,
    align_corners=False) or ``transposed_conv`` (learned); unset, it is ``repeat`` when
    ``memory_efficient`` and ``transposed_conv`` otherwise. Optional ``prenet`` (off unless
    ``layers`` > 0): a Conformer stack (restorekit.models.conformer) over the features, keys
    ``layers`` (0), ``dim`` (feature_dim; a linear projection when different), ``heads`` (8),
    ``ffn_dim`` (4 * dim), ``kernel_size`` (31, depthwise, odd), ``dropout`` (0.0) and
    ``position``: ``after_interpolation`` (default; Open-Miipher-2: features interpolated, pre-net
    at feature_rate * pre_upsample, then the conv; a transposed conv then has feature_dim channels)
    or ``before_interpolation`` (pre-net at feature_rate, conv, then interpolation). The power
    and envelope heads read the raw features.
    Generator: UBlocks with ``upsample_factors`` / ``upsample_channels``; a noise path of DBlocks
    (``downsample_channels``, full rate first) gives FiLM for every UBlock (none on the full-rate
    one, shift-only elsewhere when ``memory_efficient``). Each of the ``iterations`` steps
    subtracts the generator's estimate and rescales to the power predicted from the features; the
    waveform is detached between steps, so each output's loss trains its own pass.
    ``initial_noise``: ``white`` or ``shaped`` (spectral envelope predicted from the features).
    The build checks ``feature_rate * pre_upsample * prod(upsample_factors) == sample_rate``.
    ``infer`` / ``infer_batch`` (restoration) run the generator in the channels-last layout, and
    ``infer_batch`` takes items of unequal length in one padded, masked batch; ``compile_inference``
    runs their generator passes through torch.compile (restorekit.models.compiling).
    """

    # Inference (infer, infer_batch): the first conv of each UBlock at its input rate (polyphase)
    # and, with channels_last, the (B, C, 1, L) layout. Same weights, same output within float
    # rounding (max abs difference ~1e-6 at full size); False runs forward() itself. Speed:
    # benchmarks/README.md.
    fast_inference: bool = True
    channels_last: bool = True
    _compiled_pass: Any = None  # set by compile_inference

    def compile_inference(self) -> None:
        """Run ``infer`` / ``infer_batch``'s generator passes through ``torch.compile`` (restorekit.models
        .compiling: fused element-wise work, frozen weights; one graph for every length, batch and
        iteration). Call after loading and moving the model; its weights are constants from then on."""
        from restorekit.models.compiling import compile_for_inference

        device = next(self.parameters()).device
        self._compiled_pass = compile_for_inference(self._inference_pass, device, "wavefit")

    def _inference_pass(self, y: torch.Tensor, cond: torch.Tensor, t: torch.Tensor,
                        units: torch.Tensor | None) -> torch.Tensor:
        valid = None if units is None else ValidMask(units, cond.shape[-1])
        return self.generator(y, cond, t, valid, polyphase=True)

    def _pass(self, y: torch.Tensor, cond: torch.Tensor, t: int, valid: ValidMask | None) -> torch.Tensor:
        if self._compiled_pass is None:
            return self.generator(y, cond, t, valid, polyphase=True)
        # t as a tensor: a Python int would be a constant of the graph, one compile per iteration
        return self._compiled_pass(y, cond, torch.tensor(float(t), device=y.device),
                                   None if valid is None else valid.units)

    def __init__(
        self,
        feature_dim: int = 1024,
        feature_rate: float = 50.0,
        sample_rate: int = 24000,
        iterations: int = 5,
        pre_upsample: int = 4,
        cond_channels: int = 512,
        upsample_factors: Sequence[int] = (5, 4, 3, 2),
        upsample_channels: Sequence[int] = (512, 512, 256, 128),
        downsample_channels: Sequence[int] = (32, 128, 128, 256),
        memory_efficient: bool = False,
        initial_noise: str = "white",
        feature_interpolation: str | None = None,
        prenet: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        _check_args(feature_rate, sample_rate, pre_upsample, upsample_factors, upsample_channels,
                    downsample_channels, initial_noise, iterations)
        self.feature_dim, self.sample_rate, self.iterations = feature_dim, int(sample_rate), int(iterations)
        self.feature_rate, self.pre_upsample = float(feature_rate), int(pre_upsample)
        self.memory_efficient, self.initial_noise = memory_efficient, initial_noise
        self.interpolation = _interpolation_mode(feature_interpolation, memory_efficient)
        self.factors = [int(f) for f in upsample_factors]
        self.hop = self.pre_upsample * math.prod(self.factors)
        self._build_condition(feature_dim, cond_channels, prenet_config(prenet, feature_dim))
        self._build_upsampler(cond_channels, list(upsample_channels))
        self._build_noise_path(list(downsample_channels), list(upsample_channels))
        self.power_head = nn.Linear(feature_dim, 1)
        if initial_noise == "shaped":
            self.envelope_head = nn.Linear(feature_dim, self.hop + 1)

    def _build_condition(self, feature_dim: int, channels: int, prenet: dict[str, Any]) -> None:
        # Modules are created in the pre-net-free order of earlier versions (cond_in, then pre_up),
        # so with the pre-net off a seed gives the same weights and old exports load unchanged.
        self.prenet: Conformer | None = None
        if prenet["layers"]:
            self.prenet = Conformer(feature_dim, prenet["layers"], prenet["dim"], prenet["heads"],
                                    prenet["ffn_dim"], prenet["kernel_size"], prenet["dropout"])
        self.interpolate_features = self.prenet is not None and prenet["position"] == "after_interpolation"
        self.cond_in = _conv(prenet["dim"] if self.prenet is not None else feature_dim, channels)
        k = self.pre_upsample
        if self.interpolation == "transposed_conv" and k > 1:
            up = feature_dim if self.interpolate_features else channels
            self.pre_up = nn.ConvTranspose1d(up, up, 2 * k, stride=k, padding=k // 2)

    def _build_upsampler(self, cond_channels: int, channels: list[int]) -> None:
        cins = [cond_channels] + channels[:-1]
        self.ublocks = nn.ModuleList([UBlock(ci, co, f) for ci, co, f in zip(cins, channels, self.factors)])
        self.out = _conv(channels[-1], 1)

    def _build_noise_path(self, down: list[int], up: list[int]) -> None:
        n = len(self.factors)
        self.noise_in = _conv(1, down[0], 5)
        # down[j] is the noise path's channel count at UBlock n-1-j's output rate
        self.dblocks = nn.ModuleList([DBlock(down[j], down[j + 1], self.factors[n - 1 - j]) for j in range(n - 1)])
        films = []
        for j in range(n):
            no_film = j == 0 and self.memory_efficient
            films.append(None if no_film else FiLM(down[j], up[n - 1 - j], 128, self.memory_efficient))
        self.films = nn.ModuleList([f if f is not None else nn.Identity() for f in films])

    def condition(self, features: torch.Tensor) -> torch.Tensor:
        """(B, frames, feature_dim) -> (B, cond_channels, frames * pre_upsample)."""
        if self.interpolate_features:  # Open-Miipher-2's order: the pre-net runs at the upsampled rate
            x = self.interpolate(features.transpose(1, 2)).transpose(1, 2)
            return self.cond_in(self.prenet(x).transpose(1, 2))
        x = features if self.prenet is None else self.prenet(features)
        return self.interpolate(self.cond_in(x.transpose(1, 2)))

    def interpolate(self, c: torch.Tensor) -> torch.Tensor:
        """(B, C, frames) -> (B, C, frames * pre_upsample) by ``feature_interpolation``."""
        k, frames = self.pre_upsample, c.shape[-1]
        if k == 1:
            return c
        if self.interpolation == "repeat":
            return c.repeat_interleave(k, dim=2)
        if self.interpolation == "linear":
            return F.interpolate(c, size=frames * k, mode="linear", align_corners=False)
        return self.pre_up(c)[..., : frames * k]

    def generator(self, y: torch.Tensor, cond: torch.Tensor, t: int | torch.Tensor, valid: ValidMask | None = None,
                  polyphase: bool = False) -> torch.Tensor:
        """One WaveGrad-base pass: noisy wave (B, samples) -> estimated noise component (B, samples).

        ``cond`` is (B, C, frames) or, for the channels-last inference layout, (B, C, 1, frames);
        ``valid`` masks the padding of a batch of unequal lengths (None: every step is real)."""
        x_in = y[:, None] if cond.ndim == 3 else y[:, None, None].contiguous(memory_format=torch.channels_last)
        h = conv_any(self.noise_in, _mask(valid, x_in.to(cond.dtype)))
        films = [None] * len(self.factors)
        for j in range(len(self.factors)):  # polyphase = inference: in-place sums and activations too
            if j > 0:
                h = self.dblocks[j - 1](h, valid, polyphase)
            no_film = isinstance(self.films[j], nn.Identity)
            films[len(self.factors) - 1 - j] = None if no_film else self.films[j](h, t, valid, polyphase)
        x = cond
        for block, film in zip(self.ublocks, films):
            x = block(x, film, valid, polyphase)
        return conv_any(self.out, _mask(valid, x)).reshape(y.shape)

    def target_power(self, features: torch.Tensor) -> torch.Tensor:
        """(B, 1) mean power the output should have, predicted from the features."""
        return self.power_head(features).clamp(max=20.0).exp().mean(dim=1)

    def gain(self, z: torch.Tensor, power: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
        """Scale z (B, samples) by sqrt(power / mean(z^2)) so its power equals ``power`` (B, 1)."""
        return z * torch.sqrt(power / (z.square().mean(dim=1, keepdim=True) + eps))

    def noise(self, features: torch.Tensor, power: torch.Tensor, white: torch.Tensor | None = None) -> torch.Tensor:
        """Initial y_T (B, frames * hop) from ``white`` noise (drawn when None): shaped by a
        predicted spectral envelope when ``initial_noise`` is ``shaped``, then scaled to ``power``."""
        b, frames, _ = features.shape
        if white is None:
            white = torch.randn(b, frames * self.hop, device=features.device, dtype=features.dtype)
        elif white.shape != (b, frames * self.hop):
            raise ConfigError(f"wavefit: noise must have shape {(b, frames * self.hop)}, got {tuple(white.shape)}")
        if self.initial_noise == "shaped":
            white = self._shape(white, features)
        return self.gain(white, power)

    def _shape(self, white: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        n_fft, window = 2 * self.hop, torch.hann_window(2 * self.hop, device=white.device)
        spec = torch.stft(white, n_fft, self.hop, window=window, return_complex=True)
        env = F.softplus(self.envelope_head(features)).transpose(1, 2)  # (B, bins, frames)
        env = F.pad(env, (0, spec.shape[-1] - env.shape[-1]), mode="replicate")
        return torch.istft(spec * env, n_fft, self.hop, window=window, length=white.shape[-1])

    def forward(self, features: torch.Tensor, noise: torch.Tensor | None = None) -> list[torch.Tensor]:
        """All T outputs [y_{T-1}, ..., y_0], each (B, frames * hop).

        ``noise`` (B, frames * hop) is the white noise y_T starts from (drawn when None); passing it
        makes the output deterministic, e.g. for chunked restoration. The waveform carried into the
        next iteration is detached, so a loss on output k trains pass k only (the features, the
        power head and the shared generator still get gradient from every iteration).
        """
        self._check_features(features)
        cond, power = self.condition(features), self.target_power(features)
        y = self.noise(features, power, noise)
        outputs = []
        for t in reversed(range(self.iterations)):
            y = self.gain(y - self.generator(y, cond, t), power)
            outputs.append(y)
            # As both references do (wavefit-pytorch, Open-Miipher-2): without this, T iterations
            # backpropagate through one T-deep chain and later losses retrain earlier passes.
            y = y.detach()
        return outputs

    def _check_features(self, features: torch.Tensor) -> None:
        if features.ndim != 3 or features.shape[-1] != self.feature_dim:
            raise ConfigError(
                f"wavefit: expected features (batch, frames, {self.feature_dim}), got {tuple(features.shape)}; "
                "set models.vocoder.args.feature_dim to the cleaner's feature size"
            )

    @torch.no_grad()
    def infer(self, features: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """The final waveform (B, frames * hop) at ``sample_rate`` Hz: ``forward``'s last output, run in
        the channels-last layout (``fast_inference``; False runs ``forward`` itself)."""
        if not self.fast_inference:
            return self.forward(features, noise)[-1]
        self._check_features(features)
        cond, power = self.condition(features), self.target_power(features).float()
        return self.refine(self.noise(features, power, noise).float(), cond, power)

    @torch.no_grad()
    def infer_batch(self, features: Sequence[torch.Tensor], noises: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Items of unequal length in one padded batch: features [(frames_i, feature_dim)] and
        white noise [(frames_i * hop,)] -> waveforms [(frames_i * hop,)], each as ``infer`` gives it
        alone (padding is masked before every convolution and out of every power; float rounding
        apart). Conditioning, power and starting noise are computed per item (cheap), the T
        generator passes (the cost) once for the batch."""
        conds, powers, ys = [], [], []
        for f, n in zip(features, noises):
            self._check_features(f[None])
            power = self.target_power(f[None]).float()
            conds.append(self.condition(f[None])[0])
            powers.append(power)
            ys.append(self.noise(f[None], power, n[None].to(f.dtype))[0].float())
        frames = [f.shape[0] for f in features]
        valid = None
        if len(set(frames)) > 1:
            units = torch.tensor(frames, device=ys[0].device) * self.pre_upsample
            valid = ValidMask(units, max(c.shape[-1] for c in conds))
        y = self.refine(pad_stack(ys), pad_stack(conds), torch.cat(powers), valid)
        return [y[i, : n * self.hop] for i, n in enumerate(frames)]

    def refine(self, y: torch.Tensor, cond: torch.Tensor, power: torch.Tensor,
               valid: ValidMask | None = None) -> torch.Tensor:
        """The T inference iterations from y_T (B, samples), conditioning (B, C, frames * pre_upsample)
        and power (B, 1): the final waveform (B, samples), float32. No host synchronisation inside
        (no .item(), no data-dependent Python branch), so CUDA queues all T passes at once."""
        if self.channels_last:
            cond = cond[:, :, None].contiguous(memory_format=torch.channels_last)
        keep = None if valid is None else (torch.arange(y.shape[-1], device=y.device)[None]
                                           < valid.length(y.shape[-1])[:, None]).float()
        for t in reversed(range(self.iterations)):
            z = y - self._pass(y, cond, t, valid).float()
            y = self.gain(z, power) if keep is None else self._masked_gain(z, power, keep)
        return y

    @staticmethod
    def _masked_gain(z: torch.Tensor, power: torch.Tensor, keep: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
        """``gain`` over the valid samples only (``keep`` (B, samples) is 1 on them), padding zeroed."""
        mean_square = (z.square() * keep).sum(dim=1, keepdim=True) / keep.sum(dim=1, keepdim=True)
        return z * torch.sqrt(power / (mean_square + eps)) * keep


def pad_stack(items: Sequence[torch.Tensor]) -> torch.Tensor:
    """Tensors (..., L_i) zero-padded at the end to the longest and stacked: (B, ..., max L_i)."""
    size = max(x.shape[-1] for x in items)
    return torch.stack([F.pad(x, (0, size - x.shape[-1])) for x in items])


def _interpolation_mode(mode: str | None, memory_efficient: bool) -> str:
    if mode is None:  # what memory_efficient chose before feature_interpolation existed
        return "repeat" if memory_efficient else "transposed_conv"
    if mode not in _INTERPOLATIONS:
        raise ConfigError(f"wavefit: feature_interpolation '{mode}' is unknown; use one of {_INTERPOLATIONS}")
    return mode


def prenet_config(prenet: Mapping[str, Any] | None, feature_dim: int, who: str = "wavefit") -> dict[str, Any]:
    """The pre-net node with defaults filled in (``dim`` and ``ffn_dim`` resolved), checked; ``who``
    names the model in errors (WaveFit and the HiFi-GAN SSL vocoder share this pre-net)."""
    unknown = sorted(set(prenet or {}) - set(_PRENET_DEFAULTS))
    if unknown:
        raise ConfigError(
            f"{who}: prenet has unknown key(s) {unknown}; accepted keys: {list(_PRENET_DEFAULTS)}"
        )
    cfg = {**_PRENET_DEFAULTS, **(prenet or {})}
    cfg["dim"] = int(cfg["dim"] or feature_dim)
    cfg["ffn_dim"] = int(cfg["ffn_dim"] or 4 * cfg["dim"])
    if cfg["layers"] < 0:
        raise ConfigError(f"{who}: prenet.layers is {cfg['layers']}; use 0 (no pre-net) or a positive count")
    if not cfg["layers"]:
        return cfg
    if cfg["dim"] % cfg["heads"]:
        raise ConfigError(f"{who}: prenet.dim {cfg['dim']} is not divisible by prenet.heads "
                          f"{cfg['heads']}; change either so every attention head gets dim / heads channels")
    if cfg["kernel_size"] % 2 == 0:
        raise ConfigError(f"{who}: prenet.kernel_size {cfg['kernel_size']} must be odd so the depthwise "
                          "convolution keeps the frame count")
    if cfg["position"] not in _PRENET_POSITIONS:
        raise ConfigError(
            f"{who}: prenet.position '{cfg['position']}' is unknown; use one of {_PRENET_POSITIONS}"
        )
    return cfg


def _check_args(feature_rate, sample_rate, pre_upsample, factors, up_ch, down_ch, noise, iterations) -> None:
    n = len(factors)
    if not n or len(up_ch) != n or len(down_ch) != n:
        raise ConfigError(
            f"wavefit: upsample_factors ({list(factors)}), upsample_channels ({list(up_ch)}) and "
            f"downsample_channels ({list(down_ch)}) must be non-empty lists of equal length"
        )
    produced = feature_rate * pre_upsample * math.prod(factors)
    if abs(produced - sample_rate) > 1e-6:
        raise ConfigError(
            f"wavefit: feature_rate {feature_rate} Hz x pre_upsample {pre_upsample} x upsample_factors "
            f"{list(factors)} = {produced:g} Hz, but sample_rate is {sample_rate} Hz; change the factors "
            f"so their product is {sample_rate / feature_rate:g}"
        )
    if noise not in _NOISE_KINDS:
        raise ConfigError(f"wavefit: initial_noise '{noise}' is unknown; use one of {_NOISE_KINDS}")
    if iterations < 1:
        raise ConfigError(f"wavefit: iterations must be >= 1, got {iterations}")
