"""``packet_loss``: frames of 20-200 ms dropped (zeroed, or faded out and in) at a rate.

No declared library simulates packet loss on a waveform, so it is written here: one
vectorised gain mask over a frame grid.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from restorekit.augmentations import AUGMENTATIONS
from restorekit.augmentations.base import Augmentation, as_choices, as_range, draw

FADE_SECONDS = 0.005


@AUGMENTATIONS.register("packet_loss")
class PacketLoss(Augmentation):
    """Drop frames of frame_ms [low, high] ms with probability rate [low, high]: zeroed or faded."""

    MODES = ("zero", "fade")

    def __init__(
        self, rate: list[float] = (0.02, 0.2), frame_ms: list[float] = (20.0, 200.0), modes: list[str] = ("zero", "fade")
    ) -> None:
        self.rate = as_range(rate, "packet_loss", "rate", 0.0, 1.0)
        self.frame_ms = as_range(frame_ms, "packet_loss", "frame_ms", 1.0, 2000.0)
        self.modes = as_choices(modes, "packet_loss", "modes", self.MODES)

    def apply(self, wave: np.ndarray, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
        mode = self.modes[int(rng.integers(len(self.modes)))]
        rate, frame_ms = draw(rng, self.rate), draw(rng, self.frame_ms)
        frame = max(1, int(round(frame_ms * sr / 1000)))
        lost = rng.random(-(-len(wave) // frame)) < rate
        keep = np.repeat(~lost, frame)[: len(wave)].astype(np.float32)
        if mode == "fade":  # ramps in the kept audio next to each gap: concealment-like, no clicks
            ramp = max(1, int(FADE_SECONDS * sr))
            smooth = np.convolve(keep, np.full(ramp, 1.0 / ramp, dtype=np.float32), mode="same")
            keep = np.minimum(keep, smooth)  # lost frames stay exactly silent
        params = {"mode": mode, "rate": rate, "frame_ms": frame_ms, "lost_frames": int(lost.sum())}
        return wave * keep, params
