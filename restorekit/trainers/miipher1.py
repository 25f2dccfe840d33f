"""Miipher-1 stage 1: the text- and speaker-conditioned cleaner learns degraded -> clean SSL features.

Stages 2 and 3 are Miipher-2's vocoder stages unchanged (``miipher2_vocoder_pretrain``,
``miipher2_vocoder_finetune``): stage 3 hands the cleaner the batch keys it names in its
``conditioning`` (``phonemes``, ``text_lengths``), so the text reaches it there too.
"""
from __future__ import annotations

from typing import Any

import torch

from restorekit.errors import ConfigError
from restorekit.trainers import TRAINERS
from restorekit.trainers.base import BaseTrainer


@TRAINERS.register("miipher1_feature_cleaner")
class Miipher1CleanerTrainer(BaseTrainer):
    """Miipher-1 stage 1: the cleaner network learns degraded -> clean SSL features from phonemes and speaker.

    Roles: ``models.feature_cleaner`` (``miipher1_cleaner``: frozen SSL and speaker encoders, a text
    encoder that trains only when it is not pretrained, and the cleaner network). Batches carry
    ``degraded``, ``clean``, ``lengths`` and, for a text-conditioned cleaner, ``phonemes`` (B, L)
    and ``text_lengths`` (B,) (datasets with ``phonemes: true``). Losses (``losses.feature_cleaner``
    or a plain list, e.g. ``miipher_feature_loss`` with ``spectral_convergence: squared``) apply to
    every intermediate output against the clean features, padded frames masked, and are summed.
    Optimizer: ``trainer.args.optimizers.generator``. Export: ``feature_cleaner`` (EMA weights).
    Validation logs ``valid/loss/<name>`` of the final output (comparable with Miipher-2's stage 1)
    and ``valid/loss/all_outputs`` (the training objective).
    """

    required_roles = ("feature_cleaner",)
    trainable_roles = ("feature_cleaner",)
    ema_role = "feature_cleaner"
    export_roles = ("feature_cleaner",)

    def build_models(self) -> dict[str, torch.nn.Module]:
        models = super().build_models()
        if not hasattr(models["feature_cleaner"], "outputs"):
            raise ConfigError(
                f"trainer miipher1_feature_cleaner trains a miipher1_cleaner, but models.feature_cleaner is "
                f"'{self.cfg.models.feature_cleaner.name}'; use miipher2_feature_cleaner for adapter cleaners"
            )
        return models

    def _outputs(self, batch: dict[str, Any]) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor | None]:
        """Every intermediate output, the clean target and the valid frames per item."""
        sr, lengths = int(batch["sr"]), batch.get("lengths")
        cleaner = self.raw("feature_cleaner")
        text = {k: batch[k] for k in cleaner.conditioning if k in batch}
        with self.autocast():
            target = cleaner.target(batch["clean"], sr, lengths)
            outputs = self.model("feature_cleaner")(batch["degraded"], sr, lengths, intermediate=True, **text)
        return outputs, target, cleaner.frame_lengths(lengths, sr)

    def _summed(self, outputs: list[torch.Tensor], target: torch.Tensor,
                frames: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, float]]:
        """The losses summed over the outputs (the paper's objective), each term summed likewise."""
        total, scalars = torch.zeros((), device=self.device), {}
        for out in outputs:
            loss, values = self.weighted_losses(self.losses_for("feature_cleaner"), out, target, lengths=frames)
            total = total + loss
            for k, v in values.items():
                scalars[k] = scalars.get(k, 0.0) + v
        return total, scalars

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        outputs, target, frames = self._outputs(batch)
        loss, scalars = self._summed(outputs, target, frames)
        self.backward(loss, "generator")
        self.optimizer_step("generator")
        scalars["loss/total"] = float(loss.detach())
        return scalars

    def valid_losses(self, batch: dict[str, Any]) -> dict[str, float]:
        outputs, target, frames = self._outputs(batch)
        total, _ = self._summed(outputs, target, frames)
        final = self.weighted_losses(self.losses_for("feature_cleaner"), outputs[-1], target, lengths=frames)[1]
        return {**final, "loss/all_outputs": float(total)}
