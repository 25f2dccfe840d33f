"""The Miipher-2 feature cleaner: parallel adapters inside a frozen SSL encoder.

Where the adapter sits (our reading of the Miipher-2 figure: an adapter beside each layer's FFN,
the two reading the output of one shared norm). Every adapter reads exactly what its FFN's first
linear layer reads, the FFN's normalised input:
- w2v-BERT conformer layers have two half-step FFNs (ffn1 ... ffn2). The adapter runs beside
  ``ffn2``, the FFN that closes the block, so it sees the output of attention and convolution and
  its correction reaches the next layer directly. It reads ``ffn2_layer_norm``'s output; its
  output is added to the FFN's output (and so shares the FFN's 0.5 half-step scale).
- HuBERT / WavLM layers have one FFN, ``feed_forward``; the adapter reads what it reads: the
  post-attention ``layer_norm``'s output in base (post-norm) layers, ``final_layer_norm``'s in
  Large (pre-norm, "stable layer norm") layers.
- Gemma 3n conformer blocks (like USM's) also have two half-step FFNs; the adapter runs beside
  ``ffw_layer_end``, the one closing the block. That module clamps, normalises
  (``pre_layer_norm``) and adds its own residual inside (x + 0.5 * ffn(norm(x))), so the adapter
  reads that same frozen norm's output, computed once more beside it, and is added at full scale.

Which norms train. The shared FFN input norm stays frozen: training it would change what the
frozen FFN reads. The norm that closes each block, applied to residual + FFN + adapter, gets a
trainable copy, used while adapters are on (the frozen original serves ``target``, so the target
features are the untouched encoder's):
- w2v-BERT: ``final_layer_norm`` (LayerNorm); HuBERT / WavLM base: ``final_layer_norm``
  (LayerNorm); Gemma 3n: ``norm`` (RMSNorm).
- HuBERT / WavLM Large: none. Their layers end on the bare residual sum; the stack's one closing
  norm (``encoder.layer_norm``) follows the top layer and is not applied below it, so only the
  adapters train.
By default the adapters' output layers start at zero, so an untrained cleaner returns exactly the
frozen encoder's features; ``init: xavier`` (the Atotti variant) starts them small instead.
"""
from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from restorekit.errors import ConfigError
from restorekit.models import MODELS
from restorekit.models.ssl import SSLEncoder

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}


_INITS = ("zeros", "xavier")


class Adapter(nn.Module):
    """[LayerNorm ->] Linear d->bottleneck, activation, Linear bottleneck->d.

    ``init="zeros"``: PyTorch's default init, output layer zero (the cleaner starts as the frozen
    encoder exactly). ``init="xavier"``: both linear weights Xavier-uniform scaled by ``init_gain``,
    biases zero (the Atotti Miipher-2 adapter: near-identity start, but a gradient to every weight
    from the first step). ``input_norm`` adds the adapter's own trainable LayerNorm on its input.
    """

    def __init__(
        self, dim: int, bottleneck: int, activation: str, input_norm: bool = False,
        init: str = "zeros", init_gain: float = 0.01,
    ) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim) if input_norm else nn.Identity()
        self.down = nn.Linear(dim, bottleneck)
        self.act = _ACTIVATIONS[activation]()
        self.up = nn.Linear(bottleneck, dim)
        if init == "xavier":
            for linear in (self.down, self.up):
                nn.init.xavier_uniform_(linear.weight, gain=init_gain)
                nn.init.zeros_(linear.bias)
        else:
            nn.init.zeros_(self.up.weight)
            nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.act(self.down(self.norm(x))))


class _Switch:
    """Shared on/off flag for all adapters of one cleaner."""

    def __init__(self) -> None:
        self.on = True


class ParallelFFN(nn.Module):
    """A frozen FFN with a trainable adapter beside it, both reading the FFN's normalised input:
    ffn(x) + adapter(x) while the switch is on. Where the FFN module normalises its own input,
    ``input_norm`` names that norm inside it, and the adapter reads that norm's output instead."""

    def __init__(self, ffn: nn.Module, adapter: Adapter, switch: _Switch, input_norm: str = "") -> None:
        super().__init__()
        self.ffn, self.adapter, self._switch, self._input_norm = ffn, adapter, switch, input_norm

    def adapter_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the FFN's first linear layer reads."""
        if not self._input_norm:
            return x  # the layer normalised x before calling the FFN
        # Gemma 3n's FFN clamps at ``gradient_clipping`` (1e10 in its configs) before its norm
        clip = getattr(self.ffn, "gradient_clipping", None)
        if clip is not None:
            x = torch.clamp(x, -clip, clip)
        return getattr(self.ffn, self._input_norm)(x)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        out = self.ffn(x, *args, **kwargs)
        return out + self.adapter(self.adapter_input(x)) if self._switch.on else out


class SwitchedNorm(nn.Module):
    """A block's closing norm: a trainable copy while adapters are on, the frozen original off."""

    def __init__(self, frozen: nn.Module, switch: _Switch) -> None:
        super().__init__()
        self.frozen, self.trainable, self._switch = frozen, copy.deepcopy(frozen), switch
        self.trainable.requires_grad_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trainable(x) if self._switch.on else self.frozen(x)


@MODELS.register("parallel_adapter_cleaner")
class ParallelAdapterCleaner(nn.Module):
    """Miipher-2 feature cleaner: degraded wave (B, T) at sr Hz -> cleaned SSL features (B, frames, dim).

    ``encoder`` is an SSL encoder node (``{name: w2v_bert2, args: {...}}``); an adapter
    (Linear dim->``bottleneck``, ``activation``, Linear bottleneck->dim, output layer zero-init)
    runs beside the FFN of every layer up to the encoder's ``layer``, reading the FFN's normalised
    input, and each block's closing norm (LayerNorm; RMSNorm for Gemma 3n; none in pre-norm
    HuBERT / WavLM Large layers) is a trainable copy. Only adapters and those norms train.
    ``target(wave, sr)`` gives the frozen encoder's features (adapters off), the
    clean-speech training target.

    The Atotti Miipher-2 adapter is ``input_norm: true, activation: gelu, init: xavier,
    init_gain: 0.01``: a trainable LayerNorm first, both linear layers Xavier-uniform times
    ``init_gain`` (biases zero), so it starts near, not exactly at, the frozen encoder.
    """

    def __init__(
        self, encoder: Mapping[str, Any], bottleneck: int = 1024, activation: str = "relu",
        input_norm: bool = False, init: str = "zeros", init_gain: float = 0.01,
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ConfigError(
                f"parallel_adapter_cleaner: activation '{activation}' is unknown; use one of {sorted(_ACTIVATIONS)}"
            )
        if init not in _INITS:
            raise ConfigError(f"parallel_adapter_cleaner: init '{init}' is unknown; use one of {list(_INITS)}")
        adapter = {"activation": activation, "input_norm": bool(input_norm), "init": init,
                   "init_gain": float(init_gain)}
        self.encoder = MODELS.build(encoder, where="models.feature_cleaner.args.encoder")
        if not isinstance(self.encoder, SSLEncoder):
            raise ConfigError(
                "models.feature_cleaner.args.encoder must name an SSL encoder "
                "(w2v_bert2, hubert, wavlm, gemma3n_audio)"
            )
        if not self.encoder.spec.ffn:
            raise ConfigError(
                f"parallel_adapter_cleaner: {self.encoder.kind} cannot carry parallel adapters: its layers compute "
                "their feed-forward inline (fc1, fc2) with no FFN module to run an adapter beside; "
                "use w2v_bert2, hubert, wavlm or gemma3n_audio as the encoder"
            )
        self._switch = _Switch()
        for layer in self.encoder.blocks:
            self._wrap_layer(layer, bottleneck, adapter)
        self.feature_dim, self.frame_rate = self.encoder.feature_dim, self.encoder.frame_rate

    def _wrap_layer(self, layer: nn.Module, bottleneck: int, options: Mapping[str, Any]) -> None:
        spec, norm = self.encoder.spec, self.encoder.block_norm
        adapter = Adapter(self.encoder.feature_dim, bottleneck, **options)
        setattr(layer, spec.ffn, ParallelFFN(getattr(layer, spec.ffn), adapter, self._switch, spec.ffn_norm))
        if norm is not None:
            setattr(layer, norm, SwitchedNorm(getattr(layer, norm), self._switch))

    def num_frames(self, num_samples: int, sr: int) -> int:
        """Feature frames produced for ``num_samples`` samples at ``sr`` Hz."""
        return self.encoder.num_frames(num_samples, sr)

    def forward(self, wave: torch.Tensor, sr: int, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.encoder(wave, sr, lengths)

    @torch.no_grad()
    def target(self, wave: torch.Tensor, sr: int, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Features of the frozen encoder (adapters and trainable norms off), without gradient."""
        with self.adapters_off():
            return self.encoder(wave, sr, lengths)

    @contextlib.contextmanager
    def adapters_off(self) -> Iterator[None]:
        self._switch.on = False
        try:
            yield
        finally:
            self._switch.on = True
