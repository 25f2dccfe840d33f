"""Mimi neural speech codec (Défossez et al., Moshi, arXiv 2410.00037): a trainable reproduction.

waveform -> SEANet encoder (hop 960 at 24 kHz, 25 Hz) -> causal Transformer -> learnt x2
downsampling (12.5 Hz) -> split RVQ (1 semantic level + acoustic levels, 2048 codes each) ->
learnt x2 upsampling -> causal Transformer -> SEANet decoder -> waveform. Everything is causal and
streams in whole frames (1920 samples at 24 kHz) with carried convolution and attention state.

Parameter names follow Kyutai's release as transformers' ``MimiModel`` stores it, so
:meth:`Mimi.from_pretrained` loads ``kyutai/mimi`` (or any folder ``MimiModel.save_pretrained``
wrote) and :meth:`Mimi.save_pretrained` writes a folder ``MimiModel.from_pretrained`` loads.
Numerics follow transformers' modeling_mimi.py: left-only padding (``replicate`` for the
downsampling), RoPE with halves rotated, LayerScale, and attention to the last ``context``
frames including the current one. Written here because transformers' Mimi cannot train (no EMA
codebooks, quantiser dropout, straight-through) and does not stream its decoder.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from restorekit.errors import AudioError, CheckpointError, ConfigError, one_line
from restorekit.models import MODELS
from restorekit.models.quantization import SplitResidualVectorQuantizer, broadcast_int
from restorekit.models.seanet import (
    CausalConv1d,
    CausalConvTranspose1d,
    SEANetDecoder,
    SEANetEncoder,
    State,
    apply_weight_norm,
    plain_state_dict,
)

WEIGHTS = "model.safetensors"


# --- Transformer --------------------------------------------------------------------------------
def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat([-b, a], dim=-1)


class LayerScale(nn.Module):
    """Per-channel learnt scale of a residual branch, initialised small (0.01)."""

    def __init__(self, dim: int, init: float) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((dim,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x


class Attention(nn.Module):
    """Causal multi-head self-attention with RoPE over the last ``context`` frames."""

    def __init__(self, dim: int, heads: int, context: int, rope_theta: float) -> None:
        super().__init__()
        self.heads, self.head_dim, self.context = heads, dim // heads, context
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = (nn.Linear(dim, dim, bias=False) for _ in range(4))
        inv_freq = 1.0 / rope_theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.float) / self.head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(*x.shape[:2], self.heads, self.head_dim).transpose(1, 2)

    def _rope(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        freqs = pos[:, None].float() * self.inv_freq
        emb = torch.cat([freqs, freqs], dim=-1)
        return (x * emb.cos() + _rotate_half(x) * emb.sin()).to(x.dtype)

    def forward(self, x: torch.Tensor, start: int, state: State | None) -> torch.Tensor:
        """``x`` (B, T, dim) at absolute frame positions ``start..start+T-1``."""
        pos_q = torch.arange(start, start + x.shape[1], device=x.device)
        q = self._rope(self._heads(self.q_proj(x)), pos_q)
        k = self._rope(self._heads(self.k_proj(x)), pos_q)
        v = self._heads(self.v_proj(x))
        if state is not None:  # KV cache: only the frames a future query can still see are kept
            if self in state:
                k, v = torch.cat([state[self][0], k], dim=2), torch.cat([state[self][1], v], dim=2)
            state[self] = (k[:, :, -(self.context - 1):], v[:, :, -(self.context - 1):]) if self.context > 1 else (
                k[:, :, :0], v[:, :, :0])
        pos_k = torch.arange(start + x.shape[1] - k.shape[2], start + x.shape[1], device=x.device)
        delta = pos_q[:, None] - pos_k[None, :]
        mask = (delta >= 0) & (delta < self.context)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.o_proj(out.transpose(1, 2).reshape(*x.shape[:2], -1))


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden, bias=False), nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class TransformerLayer(nn.Module):
    """Pre-norm layer: x + LS(attn(LN(x))), then x + LS(MLP(LN(x)))."""

    def __init__(self, dim: int, heads: int, ffn: int, context: int, layer_scale: float, rope_theta: float) -> None:
        super().__init__()
        self.input_layernorm = nn.LayerNorm(dim, eps=1e-5)
        self.self_attn = Attention(dim, heads, context, rope_theta)
        self.self_attn_layer_scale = LayerScale(dim, layer_scale)
        self.post_attention_layernorm = nn.LayerNorm(dim, eps=1e-5)
        self.mlp = MLP(dim, ffn)
        self.mlp_layer_scale = LayerScale(dim, layer_scale)

    def forward(self, x: torch.Tensor, start: int, state: State | None) -> torch.Tensor:
        x = x + self.self_attn_layer_scale(self.self_attn(self.input_layernorm(x), start, state))
        return x + self.mlp_layer_scale(self.mlp(self.post_attention_layernorm(x)))


class Transformer(nn.Module):
    """Causal Transformer over ``(B, dim, T)`` latents; streaming keeps the position and KV caches."""

    def __init__(self, dim: int, layers: int, heads: int, ffn: int, context: int, layer_scale: float,
                 rope_theta: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TransformerLayer(dim, heads, ffn, context, layer_scale, rope_theta) for _ in range(layers))

    def forward(self, x: torch.Tensor, state: State | None = None) -> torch.Tensor:
        start = 0 if state is None else state.get(self, 0)
        h = x.transpose(1, 2)
        for layer in self.layers:
            h = layer(h, start, state)
        if state is not None:
            state[self] = start + h.shape[1]
        return h.transpose(1, 2)


# --- the codec ----------------------------------------------------------------------------------
class MimiStream:
    """Carried state of one stream through :meth:`Mimi.encode_stream` or :meth:`Mimi.decode_stream`."""

    def __init__(self) -> None:
        self.caches: State = {}


@MODELS.register("mimi")
class Mimi(nn.Module):
    """Mimi codec: wave (B, T) at sample_rate <-> codes (B, n_q, frames) at frame_rate (12.5 Hz), streamable.

    Defaults are Kyutai's 24 kHz release (hop 1920 samples, 2048-entry codebooks, 11 bits each)
    except ``n_q`` = 8 (1 semantic + 7 acoustic levels: 1.1 kbps, what Moshi uses; the release
    holds 32). A 16 kHz variant: ``sample_rate=16000, ratios=[8, 5, 4, 4]`` (hop 1280, same rates).
    ``ratios`` list the SEANet strides in decoder order; the learnt down/upsampling goes from the
    SEANet rate ``sample_rate / prod(ratios)`` to ``frame_rate`` (an integer factor).
    ``context``: attention span in SEANet-rate frames (250 = 10 s). Training: ``quantizer_dropout``
    draws the acoustic levels uniformly in 1..n_q-1 per batch; ``quantize_rate`` of the sequences
    are quantised, the rest pass their latent through the quantisers' projections unquantised.
    ``weight_norm`` on the SEANet convs (for training; saved folded). Released weights:
    ``Mimi.from_pretrained('kyutai/mimi')``.
    """

    def __init__(self, sample_rate: int = 24000, frame_rate: float = 12.5, ratios: Sequence[int] = (8, 6, 5, 4),
                 n_filters: int = 64, dimension: int = 512, n_residual_layers: int = 1, kernel_size: int = 7,
                 last_kernel_size: int = 3, residual_kernel_size: int = 3, dilation_growth: int = 2,
                 compress: int = 2, pad_mode: str = "constant", transformer_layers: int = 8, heads: int = 8,
                 ffn: int = 2048, context: int = 250, layer_scale: float = 0.01, rope_theta: float = 10000.0,
                 n_q: int = 8, n_semantic: int = 1, codebook_size: int = 2048, codebook_dim: int = 256,
                 upsample_groups: int | None = None, ema_decay: float = 0.99, ema_eps: float = 1e-5,
                 dead_code_ratio: float = 0.1, kmeans_iters: int = 10, quantizer_dropout: bool = True,
                 quantize_rate: float = 0.5, weight_norm: bool = False) -> None:
        super().__init__()
        self.sample_rate, self.n_q, self.n_semantic = int(sample_rate), n_q, n_semantic
        self.stride = _latent_stride(sample_rate, frame_rate, ratios)
        self.hop = math.prod(ratios) * self.stride
        self.codebook_size = codebook_size
        self.quantizer_dropout, self.quantize_rate = quantizer_dropout, quantize_rate
        _check_sizes(n_q, n_semantic, dimension, heads, upsample_groups or dimension)
        self.config = dict(sample_rate=sample_rate, ratios=list(ratios), n_filters=n_filters, dimension=dimension,
                           n_residual_layers=n_residual_layers, kernel_size=kernel_size,
                           last_kernel_size=last_kernel_size, residual_kernel_size=residual_kernel_size,
                           dilation_growth=dilation_growth, compress=compress, pad_mode=pad_mode,
                           transformer_layers=transformer_layers, heads=heads, ffn=ffn, context=context,
                           layer_scale=layer_scale, rope_theta=rope_theta, n_q=n_q, n_semantic=n_semantic,
                           codebook_size=codebook_size, codebook_dim=codebook_dim,
                           upsample_groups=upsample_groups or dimension, frame_rate=frame_rate)
        seanet = dict(ratios=ratios, n_filters=n_filters, dimension=dimension, n_residual_layers=n_residual_layers,
                      kernel_size=kernel_size, last_kernel_size=last_kernel_size,
                      residual_kernel_size=residual_kernel_size, dilation_growth=dilation_growth,
                      compress=compress, pad_mode=pad_mode)
        transformer = dict(dim=dimension, layers=transformer_layers, heads=heads, ffn=ffn, context=context,
                           layer_scale=layer_scale, rope_theta=rope_theta)
        self.encoder = SEANetEncoder(**seanet)
        self.encoder_transformer = Transformer(**transformer)
        self.downsample = CausalConv1d(dimension, dimension, 2 * self.stride, self.stride, bias=False,
                                       pad_mode="replicate")
        self.quantizer = SplitResidualVectorQuantizer(
            dimension, codebook_dim, n_q, n_semantic, codebook_size, decay=ema_decay, eps=ema_eps,
            threshold_ratio=dead_code_ratio, kmeans_iters=kmeans_iters)
        self.upsample = CausalConvTranspose1d(dimension, dimension, 2 * self.stride, self.stride,
                                              groups=upsample_groups or dimension, bias=False)
        self.decoder_transformer = Transformer(**transformer)
        self.decoder = SEANetDecoder(**seanet)
        if weight_norm:
            self.apply_weight_norm()

    # --- rates -----------------------------------------------------------------------------------
    @property
    def frame_rate(self) -> float:
        """Code frames per second (12.5 for the release)."""
        return self.sample_rate / self.hop

    def bitrate(self, n_q: int | None = None) -> float:
        """Bits per second of ``n_q`` codebooks (default: all): n_q x log2(codebook_size) x frame_rate."""
        return (n_q or self.n_q) * math.log2(self.codebook_size) * self.frame_rate

    def apply_weight_norm(self) -> None:
        """Weight norm on the SEANet convolutions (the training setting); g, v start from the current weights."""
        apply_weight_norm(self.encoder)
        apply_weight_norm(self.decoder)

    # --- offline ---------------------------------------------------------------------------------
    def encode_latent(self, wave: torch.Tensor, state: State | None = None) -> torch.Tensor:
        """Wave ``(B, T)`` -> unquantised latent ``(B, dimension, ceil(T / hop))``."""
        h = self.encoder(self._wave(wave, "encode").unsqueeze(1), state)
        return self.downsample(self.encoder_transformer(h, state), state)

    def decode_latent(self, latent: torch.Tensor, state: State | None = None) -> torch.Tensor:
        """Latent ``(B, dimension, F)`` -> wave ``(B, F * hop)``."""
        h = self.decoder_transformer(self.upsample(latent, state), state)
        return self.decoder(h, state).squeeze(1)

    def encode(self, wave: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        """Wave ``(B, T)`` at ``sample_rate`` -> codes ``(B, n_q, ceil(T / hop))`` (long)."""
        return self.quantizer.encode(self.encode_latent(wave), self._n_q(n_q))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``(B, n, F)`` (any n from 1 to n_q) -> wave ``(B, F * hop)``."""
        return self.decode_latent(self.quantizer.decode(self._codes(codes)))

    def forward(self, wave: torch.Tensor, n_q: int | None = None) -> dict[str, torch.Tensor | int]:
        """Training pass on wave ``(B, T)``; see the keys below (F = code frames).

        ``wave`` (B, T) reconstruction; ``codes`` (B, n_q, F); ``commitment`` scalar;
        ``semantic`` (B, F, dimension): the semantic quantiser's output (straight-through), the
        input of a distillation head; ``latent`` (B, F, dimension) unquantised;
        ``quantized_fraction``: share of the batch that was quantised; ``n_q``: levels used.
        In training, ``n_q`` (when not given) is drawn by quantiser dropout; in eval mode all
        sequences are quantised with ``n_q`` (default all) levels.
        """
        latent = self.encode_latent(wave)
        n_q = self._n_q(n_q) if n_q is not None or not (self.training and self.quantizer_dropout) else (
            self._draw_n_q(latent.device))
        keep = self._draw_keep(len(latent), latent.device)
        out = self.quantizer(latent, n_q, keep)
        recon = self.decode_latent(out["quantized"])[:, :wave.shape[-1]]
        return {"wave": recon, "codes": out["codes"], "commitment": out["commitment"],
                "semantic": out["semantic"].transpose(1, 2), "latent": latent.transpose(1, 2),
                "quantized_fraction": keep.float().mean(), "n_q": n_q}

    def _draw_n_q(self, device: torch.device) -> int:
        # Every rank must use the same levels: each level's EMA update is a collective call.
        drawn = int(torch.randint(1, self.n_q - self.n_semantic + 1, ()).item())
        return self.n_semantic + broadcast_int(drawn, device)

    def _draw_keep(self, batch: int, device: torch.device) -> torch.Tensor:
        if not self.training:
            return torch.ones(batch, dtype=torch.bool, device=device)
        return torch.rand(batch, device=device) < self.quantize_rate

    # --- streaming -------------------------------------------------------------------------------
    def encode_stream(self, piece: torch.Tensor, stream: MimiStream | None = None,
                      n_q: int | None = None) -> tuple[torch.Tensor, MimiStream]:
        """Codes ``(B, n_q, L / hop)`` of the next ``piece`` ``(B, L)``, L a multiple of ``hop``.

        Pass the returned stream back with the next piece; the concatenated codes equal
        :meth:`encode` of the whole signal.
        """
        stream = stream or MimiStream()
        if piece.shape[-1] % self.hop:
            raise AudioError(
                f"mimi.encode_stream: a piece of {piece.shape[-1]} samples is not a multiple of the hop "
                f"({self.hop} samples at {self.sample_rate} Hz); buffer the input into whole frames")
        latent = self.encode_latent(piece, stream.caches)
        return self.quantizer.encode(latent, self._n_q(n_q)), stream

    def decode_stream(self, codes: torch.Tensor, stream: MimiStream | None = None) -> tuple[torch.Tensor, MimiStream]:
        """Wave ``(B, F * hop)`` of the next codes ``(B, n, F)``; concatenated, equal to :meth:`decode`."""
        stream = stream or MimiStream()
        return self.decode_latent(self.quantizer.decode(self._codes(codes)), stream.caches), stream

    # --- checks ----------------------------------------------------------------------------------
    def _wave(self, wave: torch.Tensor, who: str) -> torch.Tensor:
        if wave.dim() != 2:
            raise AudioError(f"mimi.{who}: expected a wave of shape (batch, time) at {self.sample_rate} Hz, "
                             f"got shape {tuple(wave.shape)}; add a batch axis (wave[None]) or mix channels down")
        return wave

    def _n_q(self, n_q: int | None) -> int:
        n_q = self.n_q if n_q is None else int(n_q)
        if not self.n_semantic <= n_q <= self.n_q:
            raise ConfigError(f"mimi: n_q={n_q} is out of range; this model has {self.n_semantic}..{self.n_q} "
                              "codebooks (semantic first)")
        return n_q

    def _codes(self, codes: torch.Tensor) -> torch.Tensor:
        if codes.dim() != 3 or not 1 <= codes.shape[1] <= self.n_q:
            raise ConfigError(f"mimi.decode: codes must be (batch, n_q <= {self.n_q}, frames), "
                              f"got shape {tuple(codes.shape)}")
        return codes.long()

    # --- the released layout ---------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, pretrained: str | os.PathLike, n_q: int | None = None, **overrides) -> Mimi:
        """Mimi from a hub id (``kyutai/mimi``) or a folder in transformers' ``MimiModel`` layout.

        ``n_q`` keeps the first n_q codebooks (default: all the checkpoint has); ``overrides`` set
        training-only arguments (``weight_norm``, ``quantize_rate``, ...).
        """
        config, weights = _read_release(str(pretrained))
        args = {**_args_from_hf(config), **overrides}
        if n_q is not None:
            args["n_q"] = n_q
        weight_norm = args.pop("weight_norm", False)
        model = cls(**args)
        own = model.state_dict()
        missing = sorted(set(own) - set(weights))
        if missing:
            raise CheckpointError(f"mimi: {pretrained} lacks {len(missing)} tensors of this model, e.g. "
                                  f"{missing[:3]}; it is not a Mimi checkpoint of this size (n_q={model.n_q})")
        model.load_state_dict({k: weights[k] for k in own})
        if weight_norm:
            model.apply_weight_norm()
        return model

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        """Write ``config.json`` + ``model.safetensors`` that transformers' ``MimiModel.from_pretrained`` loads."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in plain_state_dict(self).items()}
        for name, write in ((WEIGHTS, lambda p: save_file(tensors, p, metadata={"format": "pt"})),
                            ("config.json", lambda p: Path(p).write_text(json.dumps(self._hf_config(), indent=2)))):
            fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
            os.close(fd)
            write(tmp)
            os.replace(tmp, folder / name)  # whole files only, as a killed run leaves no half checkpoint
        return folder

    def _hf_config(self) -> dict:
        c = self.config
        out = {"model_type": "mimi", "architectures": ["MimiModel"], "sampling_rate": c["sample_rate"],
               "audio_channels": 1, "hidden_size": c["dimension"], "num_filters": c["n_filters"],
               "num_residual_layers": c["n_residual_layers"], "upsampling_ratios": c["ratios"],
               "kernel_size": c["kernel_size"], "last_kernel_size": c["last_kernel_size"],
               "residual_kernel_size": c["residual_kernel_size"], "dilation_growth_rate": c["dilation_growth"],
               "use_causal_conv": True, "pad_mode": c["pad_mode"], "compress": c["compress"],
               "trim_right_ratio": 1.0, "codebook_size": c["codebook_size"], "codebook_dim": c["codebook_dim"],
               "num_quantizers": c["n_q"], "use_conv_shortcut": False,
               "vector_quantization_hidden_dimension": c["codebook_dim"],
               "num_semantic_quantizers": c["n_semantic"], "upsample_groups": c["upsample_groups"],
               "num_hidden_layers": c["transformer_layers"], "intermediate_size": c["ffn"],
               "num_attention_heads": c["heads"], "num_key_value_heads": c["heads"],
               "head_dim": c["dimension"] // c["heads"], "hidden_act": "gelu", "norm_eps": 1e-5,
               "sliding_window": c["context"], "layer_scale_initial_scale": c["layer_scale"],
               "rope_parameters": {"rope_type": "default", "rope_theta": c["rope_theta"]},
               "max_position_embeddings": 8000, "attention_bias": False}
        if self.stride != 2:  # transformers derives 2x unless told the frame rate
            out["frame_rate"] = c["frame_rate"]
        return out


def _latent_stride(sample_rate: int, frame_rate: float, ratios: Sequence[int]) -> int:
    seanet_rate = sample_rate / math.prod(ratios)
    stride = seanet_rate / frame_rate
    if stride < 1 or abs(stride - round(stride)) > 1e-9:
        raise ConfigError(
            f"mimi: frame_rate={frame_rate} must divide the SEANet rate sample_rate / prod(ratios) = "
            f"{sample_rate} / {math.prod(ratios)} = {seanet_rate:g} Hz by a whole factor; "
            "e.g. 24000 Hz with ratios [8, 6, 5, 4] and frame_rate 12.5")
    return round(stride)


def _check_sizes(n_q: int, n_semantic: int, dimension: int, heads: int, groups: int) -> None:
    if not 1 <= n_semantic < n_q:
        raise ConfigError(f"mimi: n_q={n_q} must exceed n_semantic={n_semantic} (>= 1): "
                          "the acoustic RVQ needs at least one level")
    if dimension % heads or (dimension // heads) % 2:
        raise ConfigError(f"mimi: dimension={dimension} must split into {heads} heads of even size (RoPE)")
    if dimension % groups:
        raise ConfigError(f"mimi: upsample_groups={groups} must divide dimension={dimension}")


def _read_release(pretrained: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """config.json as a dict and the tensors of ``model.safetensors``, from a folder or the hub cache."""
    from safetensors.torch import load_file
    from transformers.utils import cached_file

    try:
        config_path = cached_file(pretrained, "config.json")
        weights_path = cached_file(pretrained, WEIGHTS)
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"mimi: cannot load pretrained weights '{pretrained}' ({one_line(exc)[:200]}); give a local folder "
            f"holding config.json and {WEIGHTS} (transformers' MimiModel layout), or download it first "
            "(huggingface-cli download kyutai/mimi) while online; offline mode is HF_HUB_OFFLINE=1") from exc
    try:
        config = json.loads(Path(config_path).read_text())
        if config.get("model_type") != "mimi":
            raise CheckpointError(f"mimi: '{pretrained}' holds a '{config.get('model_type')}' model, not Mimi; "
                                  "give kyutai/mimi or a folder saved by MimiModel / Mimi.save_pretrained")
        return config, load_file(weights_path)
    except CheckpointError:
        raise
    except Exception as exc:  # json and safetensors raise their own error types on a damaged file
        raise CheckpointError(f"mimi: cannot read '{pretrained}' ({one_line(exc)[:200]}); re-download it") from exc


def _args_from_hf(c: dict) -> dict:
    """Our constructor arguments from a transformers ``MimiConfig`` dict (its defaults where absent)."""
    from transformers import MimiConfig

    d = MimiConfig().to_dict()
    g = lambda key: c.get(key, d.get(key))  # noqa: E731
    ratios = g("upsampling_ratios")
    rope = c.get("rope_parameters") or {}
    frame_rate = c.get("frame_rate") or c.get("_frame_rate") or g("sampling_rate") / (math.prod(ratios) * 2)
    if g("use_conv_shortcut") or not g("use_causal_conv") or g("trim_right_ratio") != 1.0:
        raise CheckpointError("mimi: this checkpoint uses conv shortcuts, non-causal convs or a trim ratio != 1; "
                              "only the released Mimi architecture is supported")
    return dict(sample_rate=g("sampling_rate"), frame_rate=frame_rate, ratios=ratios, n_filters=g("num_filters"),
                dimension=g("hidden_size"), n_residual_layers=g("num_residual_layers"),
                kernel_size=g("kernel_size"), last_kernel_size=g("last_kernel_size"),
                residual_kernel_size=g("residual_kernel_size"), dilation_growth=g("dilation_growth_rate"),
                compress=g("compress"), pad_mode=g("pad_mode"), transformer_layers=g("num_hidden_layers"),
                heads=g("num_attention_heads"), ffn=g("intermediate_size"), context=g("sliding_window"),
                layer_scale=g("layer_scale_initial_scale"),
                rope_theta=rope.get("rope_theta", c.get("rope_theta", 10000.0)), n_q=g("num_quantizers"),
                n_semantic=g("num_semantic_quantizers"), codebook_size=g("codebook_size"),
                codebook_dim=g("vector_quantization_hidden_dimension"), upsample_groups=g("upsample_groups"))

