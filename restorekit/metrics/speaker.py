"""Speaker similarity: cosine of resemblyzer d-vectors of the estimate and its reference.

resemblyzer ships its GE2E encoder weights in the wheel, so this runs offline.
"""
from __future__ import annotations

import numpy as np

from restorekit.metrics import METRICS
from restorekit.metrics.base import Metric, MetricFailure, is_silent
from restorekit.optional import import_resemblyzer


@METRICS.register("speaker_similarity")
class SpeakerSimilarity(Metric):
    """Cosine similarity (-1..1) of resemblyzer speaker embeddings, at 16 kHz; reference required."""

    requires = ("resemblyzer",)

    needs_reference = True
    sample_rate = 16000
    keys = ("speaker_similarity",)

    def __init__(self) -> None:
        resemblyzer = import_resemblyzer()
        self._preprocess = resemblyzer.preprocess_wav
        self.encoder = resemblyzer.VoiceEncoder(device="cpu", verbose=False)

    def embed(self, wave: np.ndarray, what: str) -> np.ndarray:
        """The d-vector (256,) of one 16 kHz utterance, after resemblyzer's VAD trimming."""
        if is_silent(wave):  # resemblyzer's volume normalisation would turn silence into NaN
            raise MetricFailure(f"the {what} is silent; there is no voice to embed")
        trimmed = self._preprocess(wave)
        if len(trimmed) < 1600:  # the VAD removed (almost) everything: nothing to embed
            raise MetricFailure(f"the {what} has no speech left after voice-activity trimming")
        return self.encoder.embed_utterance(trimmed)

    def score(self, estimate: np.ndarray, reference: np.ndarray | None, sr: int) -> dict[str, float]:
        a, b = self.embed(estimate, "estimate"), self.embed(reference, "reference")
        denom = float(np.linalg.norm(a) * np.linalg.norm(b))
        if denom == 0.0:
            raise MetricFailure("a speaker embedding is all zeros; cosine similarity is undefined")
        return {"speaker_similarity": float(a @ b) / denom}
