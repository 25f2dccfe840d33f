"""Miipher-2 stage 1: the parallel adapters learn to map degraded speech to clean SSL features."""
from __future__ import annotations

from typing import Any

import torch

from restorekit.trainers import TRAINERS
from restorekit.trainers.base import BaseTrainer


@TRAINERS.register("miipher2_feature_cleaner")
class FeatureCleanerTrainer(BaseTrainer):
    """Miipher-2 stage 1: adapters learn degraded -> clean SSL features (frozen encoder, feature losses).

    Roles: ``models.feature_cleaner`` (a cleaner with ``forward`` = adapters on and ``target`` =
    frozen encoder features). Losses: ``losses.feature_cleaner`` (or a plain loss list) applied to (cleaned features of the
    degraded input, encoder features of the clean input), e.g. ``miipher_feature_loss``.
    Optimizer: ``trainer.args.optimizers.generator``. Export: ``feature_cleaner`` (EMA weights).
    Validation logs ``valid/loss/*`` (this stage makes no audio).
    """

    required_roles = ("feature_cleaner",)
    trainable_roles = ("feature_cleaner",)
    ema_role = "feature_cleaner"
    export_roles = ("feature_cleaner",)

    def _features(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Cleaned features, their clean target and the valid frames per item (None: unpadded)."""
        sr, lengths = int(batch["sr"]), batch.get("lengths")
        cleaner = self.raw("feature_cleaner")
        with self.autocast():  # one precision for both sides of the comparison
            target = cleaner.target(batch["clean"], sr, lengths)
            estimate = self.model("feature_cleaner")(batch["degraded"], sr, lengths)
        frames = None
        if lengths is not None and int(lengths.min()) < int(lengths.max()):  # padded: keep it out of the loss
            frames = torch.tensor([min(cleaner.num_frames(int(n), sr), estimate.shape[1]) for n in lengths],
                                  device=estimate.device)
        return estimate, target, frames

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        estimate, target, frames = self._features(batch)
        loss, scalars = self.weighted_losses(self.losses_for("feature_cleaner"), estimate, target, lengths=frames)
        self.backward(loss, "generator")
        self.optimizer_step("generator")
        scalars["loss/total"] = float(loss.detach())
        return scalars

    def valid_losses(self, batch: dict[str, Any]) -> dict[str, float]:
        estimate, target, frames = self._features(batch)
        return self.weighted_losses(self.losses_for("feature_cleaner"), estimate, target, lengths=frames)[1]
