"""``neural_codec``: speech through a neural codec (Mimi) at a drawn number of codebooks.

The codec is a Hugging Face hub id (``kyutai/mimi``), a folder in transformers' ``MimiModel``
layout, or a restorekit export whose ``codec`` role is one (what the ``mimi_codec`` trainer
writes). It is loaded on first use, once per process (each DataLoader worker loads its own
copy), so building a chain that lists it with ``p: 0`` needs no weights. Audio is resampled to
the codec's rate with soxr, padded to whole codec frames, encoded with ``n_q`` codebooks,
decoded, resampled back and cut to its length; Mimi is causal, so the decoded audio is aligned
with its input and padding never changes the frames before it.

Unlike the other degradations this one runs a model: augmentations sit below models in the
import order (DESIGN.md §1), so the model code is imported when the codec is loaded, not at
import time.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from restorekit import audio
from restorekit.augmentations import AUGMENTATIONS
from restorekit.augmentations.base import Augmentation, as_range, draw_int, fit_length
from restorekit.errors import ConfigError


def load_codec(spec: str, device: str = "cpu") -> torch.nn.Module:
    """A codec with ``encode(wave, n_q)``, ``decode(codes)``, ``sample_rate``, ``hop``, ``n_q``, in eval mode.

    ``spec``: a restorekit export folder (its ``codec`` role, or its only role), a folder in
    transformers' ``MimiModel`` layout, or a hub id.
    """
    from restorekit.models.mimi import Mimi

    folder = Path(str(spec)).expanduser()
    if (folder / "config.yaml").is_file():
        from restorekit.models.export import load_export

        modules = load_export(folder)
        codec = modules.get("codec") or (next(iter(modules.values())) if len(modules) == 1 else None)
        if codec is None:
            raise ConfigError(f"neural codec {spec}: the export holds {', '.join(sorted(modules))} but no 'codec' role; "
                              "point to the export of a mimi_codec run")
    else:
        codec = Mimi.from_pretrained(str(spec))
    for attr in ("encode", "decode", "sample_rate", "hop", "n_q"):
        if not hasattr(codec, attr):
            raise ConfigError(f"neural codec {spec}: {type(codec).__name__} is not a codec (it has no '{attr}')")
    return codec.to(device).eval()


class CodecRoundTrip:
    """A lazily loaded codec and its batched round trip at any input rate (shared with the enhancer)."""

    def __init__(self, spec: str, device: str = "cpu") -> None:
        self.spec, self.device = str(spec), str(device)
        self._codec: torch.nn.Module | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_codec": None}  # a DataLoader worker loads its own copy

    @property
    def codec(self) -> torch.nn.Module:
        if self._codec is None:
            self._codec = load_codec(self.spec, self.device)
        return self._codec

    def bitrate(self, n_q: int) -> float:
        """Bits per second at ``n_q`` codebooks."""
        codec = self.codec
        if hasattr(codec, "bitrate"):
            return float(codec.bitrate(n_q))
        return n_q * float(np.log2(codec.codebook_size)) * codec.sample_rate / codec.hop

    @torch.no_grad()
    def __call__(self, waves: list[np.ndarray], sr: int, n_q: int) -> list[np.ndarray]:
        """Each ``(T_i,)`` float32 wave at ``sr`` through the codec at ``n_q`` codebooks, as one batch."""
        codec = self.codec
        rate, hop = int(codec.sample_rate), int(codec.hop)
        coded = [audio.resample(w, sr, rate) for w in waves]
        frames = max(-(-len(c) // hop) for c in coded)
        batch = np.zeros((len(coded), max(frames, 1) * hop), dtype=np.float32)
        for i, c in enumerate(coded):
            batch[i, : len(c)] = c
        x = torch.from_numpy(batch).to(self.device)
        out = codec.decode(codec.encode(x, n_q)).float().cpu().numpy()
        return [fit_length(audio.resample(out[i, : len(c)], rate, sr), len(w))
                for i, (c, w) in enumerate(zip(coded, waves))]


@AUGMENTATIONS.register("neural_codec")
class NeuralCodec(Augmentation):
    """Neural codec round trip (Mimi) with ``n_q`` codebooks drawn per sample from [low, high]; same length and rate.

    ``model``: hub id (``kyutai/mimi``), a ``MimiModel`` folder, or a restorekit ``mimi_codec``
    export; loaded on first use, once per process. ``n_q`` is drawn uniformly (integers,
    inclusive) and must fit the codec's codebooks (Mimi: 8 at 1.1 kbps, 1 = 0.1375 kbps).
    ``device``: where the codec runs (``cpu``, ``cuda:0``); ``apply_batch`` runs several
    samples in one forward pass there. Params: ``n_q``, ``kbps``.
    """

    def __init__(self, model: str, n_q: list[int] = (1, 8), device: str = "cpu") -> None:
        self.n_q = as_range(n_q, "neural_codec", "n_q", 1, 64)
        if self.n_q[0] != int(self.n_q[0]) or self.n_q[1] != int(self.n_q[1]):
            raise ConfigError(f"augmentation 'neural_codec': args.n_q must be whole numbers of codebooks, got {n_q!r}")
        self.roundtrip = CodecRoundTrip(model, device)

    def _draw(self, rng: np.random.Generator) -> int:
        n = draw_int(rng, self.n_q)
        available = int(self.roundtrip.codec.n_q)
        if n > available:
            raise ConfigError(f"augmentation 'neural_codec': args.n_q reaches {int(self.n_q[1])} but {self.roundtrip.spec} "
                              f"has {available} codebooks; lower n_q's upper bound")
        return n

    def apply(self, wave: np.ndarray, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
        return self.apply_batch([wave], sr, [rng])[0]

    def apply_batch(self, waves: list[np.ndarray], sr: int, rngs: list[np.random.Generator]
                    ) -> list[tuple[np.ndarray, dict[str, Any]]]:
        """``apply`` for several samples (one generator each), one codec pass per drawn ``n_q``."""
        draws = [self._draw(rng) for rng in rngs]
        outputs: list[Any] = [None] * len(waves)
        for n in sorted(set(draws)):
            idx = [i for i, d in enumerate(draws) if d == n]
            for i, out in zip(idx, self.roundtrip([np.asarray(waves[i], np.float32) for i in idx], sr, n)):
                outputs[i] = (out, {"n_q": n, "kbps": round(self.roundtrip.bitrate(n) / 1000, 4)})
        return outputs


__all__ = ["NeuralCodec", "CodecRoundTrip", "load_codec"]
