"""``mimi_resynthesis``: a neural codec round trip as an enhancer, so codec quality is scored like a restorer."""
from __future__ import annotations

from typing import Any

import numpy as np

from restorekit.augmentations.neural_codec import CodecRoundTrip
from restorekit.enhancers import ENHANCERS
from restorekit.enhancers.base import Enhancer
from restorekit.errors import ConfigError


@ENHANCERS.register("mimi_resynthesis")
class MimiResynthesis(Enhancer):
    """Round trip through a Mimi codec at ``n_q`` codebooks: (T,) at any rate -> (T,) at the input rate.

    ``model``: hub id (``kyutai/mimi``), a ``MimiModel`` folder or a restorekit ``mimi_codec``
    export, loaded on first use. The input is resampled to the codec's rate and back (soxr); the
    causal codec keeps it aligned. ``info`` (codec, n_q, bitrate in kbps) goes into the evaluation
    report beside the scores. ``device``: where the codec runs.
    """

    def __init__(self, model: str = "kyutai/mimi", n_q: int = 8, device: str = "cpu") -> None:
        self.roundtrip = CodecRoundTrip(model, device)
        self.n_q = int(n_q)

    @property
    def info(self) -> dict[str, Any]:
        """What the report shows beside this enhancer's scores."""
        self._check_n_q()
        return {"codec": self.roundtrip.spec, "n_q": self.n_q,
                "bitrate_kbps": round(self.roundtrip.bitrate(self.n_q) / 1000, 4)}

    def _check_n_q(self) -> None:
        available = int(self.roundtrip.codec.n_q)
        if not 1 <= self.n_q <= available:
            raise ConfigError(f"mimi_resynthesis: n_q={self.n_q} is out of range; {self.roundtrip.spec} has "
                              f"1..{available} codebooks")

    def enhance(self, wave: np.ndarray, sr: int) -> tuple[np.ndarray, int]:
        self._check_n_q()
        return self.roundtrip([wave], sr, self.n_q)[0], sr

    def enhance_batch(self, items: list[tuple[np.ndarray, int]]) -> list[tuple[np.ndarray, int]]:
        """Items of one rate go through the codec as one batch (the causal codec makes padding harmless)."""
        self._check_n_q()
        rates = {sr for _, sr in items}
        if len(rates) != 1:
            return super().enhance_batch(items)
        sr = rates.pop()
        return [(out, sr) for out in self.roundtrip([_checked(w, sr) for w, _ in items], sr, self.n_q)]


def _checked(wave: np.ndarray, sr: int) -> np.ndarray:
    """The enhancer contract's input checks for a batched item."""
    from restorekit.enhancers.base import check_input

    return check_input(wave, sr, "MimiResynthesis")[0]


__all__ = ["MimiResynthesis"]
