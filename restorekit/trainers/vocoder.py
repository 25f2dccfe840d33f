"""Miipher-2 stages 2 and 3: the WaveFit vocoder trained adversarially on SSL features.

Stage 2 (``miipher2_vocoder_pretrain``) vocodes features of clean speech (the frozen encoder,
adapters off). Stage 3 (``miipher2_vocoder_finetune``) vocodes features that a frozen stage-1
cleaner produced from degraded speech, starting from the stage-2 vocoder, so the vocoder
learns to absorb the cleaner's residual errors. Both apply every loss to all WaveFit
iterations, as WaveFit does.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from restorekit.errors import ConfigError
from restorekit.trainers import TRAINERS
from restorekit.trainers.base import BaseTrainer, TrainerArgs
from restorekit.trainers.gan import GanLosses, adversarial_step


@dataclass
class VocoderArgs(TrainerArgs):
    """Adds ``discriminators``: the model roles that judge the vocoder (default: [discriminators])."""

    discriminators: list = field(default_factory=lambda: ["discriminators"])


class _VocoderTrainer(BaseTrainer):
    Args = VocoderArgs
    ema_role = "vocoder"

    @property
    def trainable_roles(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("vocoder", *self.args.discriminators)

    def roles(self) -> list[str]:
        return ["feature_cleaner", "vocoder", *self.args.discriminators]

    def optimizer_roles(self) -> dict[str, list[str]]:
        groups = {"generator": ["vocoder"]}
        if self.args.discriminators:
            groups["discriminator"] = list(self.args.discriminators)
        return groups

    def check_inputs(self) -> None:
        super().check_inputs()
        discs = self.args.discriminators
        if not isinstance(discs, (list, tuple)) or len(set(discs)) != len(discs) or "vocoder" in discs:
            raise ConfigError(
                f"trainer.args.discriminators must be a list of distinct model roles (e.g. [mpd, msd]), got {discs}"
            )

    def features(self, batch: dict[str, Any]) -> torch.Tensor:
        """The SSL features the vocoder learns from (differs per stage)."""
        raise NotImplementedError

    def _real(self, batch: dict[str, Any], sr_out: int) -> torch.Tensor:
        clean = batch["clean"]
        sr_in = int(batch["sr"])
        if sr_in == sr_out:
            return clean
        import julius

        return julius.resample_frac(clean, sr_in, sr_out)

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        with torch.no_grad(), self.autocast():
            feats = self.features(batch)
        with self.autocast():
            outputs = self.model("vocoder")(feats.float())
        real = self._real(batch, int(self.raw("vocoder").sample_rate))
        n = min(real.shape[-1], min(o.shape[-1] for o in outputs))
        fake = torch.cat([o[..., :n] for o in outputs], dim=0)  # every WaveFit iteration is trained
        real = real[..., :n].repeat(len(outputs), 1)
        scalars = adversarial_step(self, self._gan_losses(), list(self.args.discriminators), fake, real)
        return scalars

    def _gan_losses(self) -> GanLosses:
        # losses.vocoder: generator side; losses.discriminator: D's objective (else G's GAN terms)
        return GanLosses.split(self.losses_for("vocoder"), self.losses.get("discriminator"))

    @torch.no_grad()
    def synthesize(self, batch: dict[str, Any]) -> tuple[torch.Tensor, int]:
        with self.autocast():
            wave = self.raw("vocoder").infer(self.features(batch).float())
        return wave.float(), int(self.raw("vocoder").sample_rate)


@TRAINERS.register("miipher2_vocoder_pretrain")
class VocoderPretrainTrainer(_VocoderTrainer):
    """Miipher-2 stage 2: WaveFit + discriminators learn clean SSL features -> clean waveform.

    Roles: ``feature_cleaner`` (frozen; only its ``target`` = encoder features of clean speech is
    used), ``vocoder`` (WaveFit, returns all iterations), and the discriminator roles listed in
    ``trainer.args.discriminators``. Losses (``losses.vocoder``, ``losses.discriminator``, or
    one plain list): waveform losses (``multi_resolution_stft``,
    ``mel_l1``), a GAN loss (``hinge_gan``/``lsgan``) and ``feature_matching``. Optimizers:
    ``generator`` and ``discriminator``. Export: vocoder (EMA weights) and discriminators.
    """

    @property
    def export_roles(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("vocoder", *self.args.discriminators)

    def features(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.raw("feature_cleaner").target(batch["clean"], int(batch["sr"]), batch.get("lengths"))


@TRAINERS.register("miipher2_vocoder_finetune")
class VocoderFinetuneTrainer(_VocoderTrainer):
    """Miipher-2 stage 3: WaveFit fine-tuned on features from the frozen stage-1 cleaner.

    Needs ``trainer.args.init_from.feature_cleaner`` (the stage-1 export, frozen) and
    ``trainer.args.init_from.vocoder`` (the stage-2 export); discriminators come from
    ``init_from`` too when listed there, else from ``models``. Export: ``feature_cleaner`` +
    ``vocoder``, a complete Miipher-2 restorer that inference loads by path.
    """

    export_roles = ("feature_cleaner", "vocoder")

    def check_inputs(self) -> None:
        for role, stage in (("feature_cleaner", "stage-1 (miipher2_feature_cleaner)"),
                            ("vocoder", "stage-2 (miipher2_vocoder_pretrain)")):
            if not self.args.init_from.get(role):
                raise ConfigError(
                    f"trainer.args.init_from.{role} is not set: stage 3 starts from the {stage} export; "
                    f"set it to that run's export folder (e.g. runs/quickstart/stage1/export)"
                )
        super().check_inputs()

    def features(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.raw("feature_cleaner")(batch["degraded"], int(batch["sr"]), batch.get("lengths"))
