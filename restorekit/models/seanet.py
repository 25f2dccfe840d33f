"""SEANet encoder/decoder with causal, streamable convolutions (the convolutional half of Mimi).

Module and attribute names follow the released Mimi checkpoint as transformers' ``MimiModel``
stores it (``layers.N``, ``block.1.conv``, ``conv``), so its state dict loads into these modules
without renaming. Numerics follow transformers' ``MimiConv1d`` / ``MimiConvTranspose1d``: all
padding on the left (``kernel - stride``), extra right padding so the last frame is whole, and
transposed convolutions trimmed entirely on the right.

Streaming: every ``forward`` takes an optional ``state`` dict (one per stream, keyed by module).
A convolution keeps its last ``kernel - stride`` inputs there; a transposed convolution keeps the
overlapping tail of its output. Pieces must be whole multiples of each layer's stride (whole codec
frames guarantee that), and then the concatenated outputs equal the offline result. Written here
because transformers' Mimi streams only the encoder convolutions and no field library has
stateful causal SEANet blocks.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm as _weight_norm

State = dict  # per-stream caches: {module: tensor}


class CausalConv1d(nn.Module):
    """Conv1d padded on the left only; ``(B, C_in, T) -> (B, C_out, ceil(T / stride))``.

    ``pad_mode`` is ``constant`` (zeros) or ``replicate`` (the first sample repeated; Mimi's
    learnt downsampling uses it).
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1,
                 groups: int = 1, bias: bool = True, pad_mode: str = "constant") -> None:
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel, stride, dilation=dilation, groups=groups, bias=bias)
        self.stride = stride
        self.pad = (kernel - 1) * dilation + 1 - stride
        self.pad_mode = pad_mode

    def forward(self, x: torch.Tensor, state: State | None = None) -> torch.Tensor:
        if state is None:
            extra = -x.shape[-1] % self.stride  # completes the last frame, as transformers does
            return self.conv(F.pad(x, (self.pad, extra), mode=self.pad_mode))
        if x.shape[-1] % self.stride:
            raise AssertionError(f"streaming piece of {x.shape[-1]} steps is not a multiple of stride {self.stride}")
        past = state.get(self)
        if past is None:
            past = x.new_zeros(*x.shape[:-1], self.pad) if self.pad_mode == "constant" else (
                x[..., :1].expand(*x.shape[:-1], self.pad))
        x = torch.cat([past, x], dim=-1)
        state[self] = x[..., x.shape[-1] - self.pad:]
        return self.conv(x)


class CausalConvTranspose1d(nn.Module):
    """ConvTranspose1d trimmed on the right; ``(B, C_in, T) -> (B, C_out, T * stride)``."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, groups: int = 1, bias: bool = True) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose1d(cin, cout, kernel, stride, groups=groups, bias=bias)
        self.trim = kernel - stride

    def forward(self, x: torch.Tensor, state: State | None = None) -> torch.Tensor:
        y = self.conv(x)
        keep = y.shape[-1] - self.trim
        if state is None:
            return y[..., :keep]
        tail = state.get(self)
        if tail is not None:  # overlap-add what the previous piece's last frames spilled over
            y = torch.cat([y[..., :self.trim] + tail, y[..., self.trim:]], dim=-1)
        tail = y[..., keep:]
        if self.conv.bias is not None:  # the next piece adds its own bias to these samples
            tail = tail - self.conv.bias[:, None]
        state[self] = tail
        return y[..., :keep]


class ResidualUnit(nn.Module):
    """ELU -> causal conv (k, dilation) dim -> dim/compress -> ELU -> conv k1 back, identity skip."""

    def __init__(self, dim: int, kernel: int, dilation: int, compress: int, pad_mode: str) -> None:
        super().__init__()
        hidden = dim // compress
        self.block = nn.ModuleList([
            nn.ELU(), CausalConv1d(dim, hidden, kernel, dilation=dilation, pad_mode=pad_mode),
            nn.ELU(), CausalConv1d(hidden, dim, 1, pad_mode=pad_mode),
        ])

    def forward(self, x: torch.Tensor, state: State | None = None) -> torch.Tensor:
        return x + _run(self.block, x, state)


def _run(layers: nn.ModuleList, x: torch.Tensor, state: State | None) -> torch.Tensor:
    for layer in layers:
        x = layer(x) if isinstance(layer, nn.ELU) else layer(x, state)
    return x


class SEANetEncoder(nn.Module):
    """Waveform ``(B, 1, T)`` -> latent ``(B, dimension, ceil(T / prod(ratios)))``.

    ``ratios`` are listed in decoder order (released Mimi: 8, 6, 5, 4), so the encoder downsamples
    by 4, 5, 6, 8, doubling the channels from ``n_filters`` at each stage.
    """

    def __init__(self, ratios: Sequence[int], n_filters: int, dimension: int, n_residual_layers: int,
                 kernel_size: int, last_kernel_size: int, residual_kernel_size: int,
                 dilation_growth: int, compress: int, pad_mode: str) -> None:
        super().__init__()
        layers: list[nn.Module] = [CausalConv1d(1, n_filters, kernel_size, pad_mode=pad_mode)]
        channels = n_filters
        for ratio in reversed(ratios):
            layers += [ResidualUnit(channels, residual_kernel_size, dilation_growth ** j, compress, pad_mode)
                       for j in range(n_residual_layers)]
            layers += [nn.ELU(), CausalConv1d(channels, channels * 2, 2 * ratio, ratio, pad_mode=pad_mode)]
            channels *= 2
        layers += [nn.ELU(), CausalConv1d(channels, dimension, last_kernel_size, pad_mode=pad_mode)]
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor, state: State | None = None) -> torch.Tensor:
        return _run(self.layers, x, state)


class SEANetDecoder(nn.Module):
    """Latent ``(B, dimension, F)`` -> waveform ``(B, 1, F * prod(ratios))``; mirrors the encoder."""

    def __init__(self, ratios: Sequence[int], n_filters: int, dimension: int, n_residual_layers: int,
                 kernel_size: int, last_kernel_size: int, residual_kernel_size: int,
                 dilation_growth: int, compress: int, pad_mode: str) -> None:
        super().__init__()
        channels = n_filters * 2 ** len(ratios)
        layers: list[nn.Module] = [CausalConv1d(dimension, channels, kernel_size, pad_mode=pad_mode)]
        for ratio in ratios:
            layers += [nn.ELU(), CausalConvTranspose1d(channels, channels // 2, 2 * ratio, ratio)]
            channels //= 2
            layers += [ResidualUnit(channels, residual_kernel_size, dilation_growth ** j, compress, pad_mode)
                       for j in range(n_residual_layers)]
        layers += [nn.ELU(), CausalConv1d(channels, 1, last_kernel_size, pad_mode=pad_mode)]
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor, state: State | None = None) -> torch.Tensor:
        return _run(self.layers, x, state)


def apply_weight_norm(module: nn.Module) -> nn.Module:
    """Weight norm (``torch.nn.utils.parametrizations``) on every conv inside ``module``; returns it.

    Applied after loading weights, so g and v start from the loaded weight.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d)):
            _weight_norm(m)
    return module


def plain_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """``module``'s state dict with weight-norm parametrisations folded into plain ``weight``s.

    The released layout stores plain conv weights; a model trained with weight norm saves the
    same keys this way.
    """
    out = {k: v for k, v in module.state_dict().items() if ".parametrizations.weight.original" not in k}
    for name, m in module.named_modules():
        if parametrize.is_parametrized(m, "weight"):
            out[f"{name}.weight"] = m.weight.detach()  # g * v / |v|, computed by the parametrisation
    return out
