"""Miipher-2 stages 2 and 3: the WaveFit vocoder trained adversarially on SSL features.

Stage 2 (``miipher2_vocoder_pretrain``) vocodes features of clean speech (the frozen encoder,
adapters off). Stage 3 (``miipher2_vocoder_finetune``) vocodes features that a frozen stage-1
cleaner produced from degraded speech, starting from the stage-2 vocoder, so the vocoder
learns to absorb the cleaner's residual errors. Both apply every loss to all WaveFit
iterations, as WaveFit does.

Context: the encoder (and stage 3's cleaner) runs over the whole data segment (10 s in the
full-size recipes, as inference feeds 10 s chunks: the encoder's normalisation and attention
then see the context they see at inference), and the vocoder trains on a random frame-aligned
crop of ``vocoder_segment_seconds`` of those features and the matching audio.

Level: each item is scaled so its clean target peaks at ``target_peak`` (the degraded input by
the same factor). The SSL features do not carry the input level, so a vocoder trained on
unnormalised targets could only learn the corpus' mean level; with normalised targets its
power head has a level it can predict. ``Miipher2.restore`` applies the same peak at inference.

Precision: features are computed in fp32, as inference computes them; only the vocoder and
the discriminators run under autocast.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from restorekit.errors import ConfigError
from restorekit.models.miipher2 import check_pair
from restorekit.trainers import TRAINERS
from restorekit.trainers.base import BaseTrainer, setting
from restorekit.trainers.data import resample
from restorekit.trainers.gan import GanArgs, GanLosses, adversarial_step, check_gan_args, gan_optimizer_roles


@dataclass
class VocoderArgs(GanArgs):
    """Adds ``vocoder_segment_seconds`` (null: train the vocoder on the whole segment) and
    ``target_peak`` (null: keep the data's level) to the adversarial settings."""

    vocoder_segment_seconds: float | None = setting(
        None, "random frame-aligned crop the vocoder trains on; the encoder sees the whole segment; null: no crop")
    target_peak: float | None = setting(0.9, "peak each clean target (and its degraded input) is scaled to; null: as is")


class _VocoderTrainer(BaseTrainer):
    Args = VocoderArgs
    ema_role = "vocoder"

    @property
    def trainable_roles(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("vocoder", *self.args.discriminators)

    def roles(self) -> list[str]:
        return ["feature_cleaner", "vocoder", *self.args.discriminators]

    def optimizer_roles(self) -> dict[str, list[str]]:
        return gan_optimizer_roles("vocoder", self.args.discriminators)

    def check_inputs(self) -> None:
        super().check_inputs()
        check_gan_args(self.args)
        if "vocoder" in self.args.discriminators:
            raise ConfigError(
                f"trainer.args.discriminators must be a list of distinct model roles (e.g. [mpd, msd]), got "
                f"{self.args.discriminators}"
            )
        crop, peak = self.args.vocoder_segment_seconds, self.args.target_peak
        if crop is not None and not float(crop) > 0:
            raise ConfigError(f"trainer.args.vocoder_segment_seconds must be > 0 or null, got {crop}")
        if peak is not None and not 0 < float(peak) <= 1:
            raise ConfigError(f"trainer.args.target_peak must be in (0, 1] or null, got {peak}")

    def build_models(self) -> dict[str, torch.nn.Module]:
        """Build, then check the cleaner/vocoder pair (feature size, frame rate, length) before training."""
        models = super().build_models()
        check_pair(models["feature_cleaner"], models["vocoder"])
        sr = int(self.cfg.data.get("sample_rate", 16000))
        self._check_lengths(models["feature_cleaner"].num_frames(10 * sr, sr), 10 * int(models["vocoder"].sample_rate),
                            models["vocoder"], "10 s of audio")
        return models

    @staticmethod
    def _check_lengths(frames: int, samples: int, vocoder: torch.nn.Module, what: str) -> None:
        """ConfigError when ``frames`` vocoded differ from the ``samples`` they stand for by more than a hop."""
        made = frames * vocoder.hop
        if abs(made - samples) > vocoder.hop:
            raise ConfigError(
                f"the feature cleaner makes {frames} frames from {what}, which the vocoder turns into {made} samples, "
                f"but the target has {samples} (more than one hop, {vocoder.hop}, apart): the encoder's frame rate and "
                "models.vocoder.args (feature_rate, pre_upsample, upsample_factors, sample_rate) do not pair"
            )

    def features(self, batch: dict[str, Any]) -> torch.Tensor:
        """The SSL features the vocoder learns from (differs per stage)."""
        raise NotImplementedError

    def _real(self, batch: dict[str, Any], sr_out: int) -> torch.Tensor:
        return resample(batch["clean"], int(batch["sr"]), sr_out)

    def _level(self, batch: dict[str, Any]) -> dict[str, Any]:
        """``batch`` with clean (and degraded, by the same factor) scaled so clean peaks at target_peak."""
        if self.args.target_peak is None:
            return batch
        peak = batch["clean"].abs().amax(dim=1, keepdim=True)
        gain = torch.where(peak > 1e-5, float(self.args.target_peak) / peak.clamp_min(1e-5), torch.ones_like(peak))
        out = {**batch, "clean": batch["clean"] * gain}
        if "degraded" in batch:
            out["degraded"] = batch["degraded"] * gain
        return out

    def crop(self, feats: torch.Tensor, real: torch.Tensor, valid_frames: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A random frame-aligned crop per item: features (B, n, D), audio (B, n * hop), start frames (B,).

        ``valid_frames`` (B,) bounds each item's start to its unpadded part. Draws from the global
        RNG, which checkpoints save, so a resumed run crops as the uninterrupted one would.
        """
        hop = self.raw("vocoder").hop
        n = max(1, round(float(self.args.vocoder_segment_seconds) * self.raw("vocoder").feature_rate))
        b, frames, dim = feats.shape
        real = F.pad(real, (0, max(0, frames * hop - real.shape[-1])))
        if frames <= n:
            return feats, real[:, : frames * hop], torch.zeros(b, dtype=torch.long, device=feats.device)
        room = (valid_frames.clamp(min=n, max=frames) - n + 1).to(feats.device)
        starts = (torch.rand(b, device=feats.device) * room).long()
        idx = starts[:, None] + torch.arange(n, device=feats.device)
        feats = feats.gather(1, idx[..., None].expand(b, n, dim))
        sidx = starts[:, None] * hop + torch.arange(n * hop, device=feats.device)
        return feats, real.gather(1, sidx), starts

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        batch = self._level(batch)
        vocoder = self.raw("vocoder")
        with torch.no_grad():  # fp32, as at inference
            feats = self.features(batch).float()
        real = self._real(batch, int(vocoder.sample_rate))
        self._check_lengths(feats.shape[1], real.shape[-1], vocoder, "the training batch")
        if self.args.vocoder_segment_seconds is not None:
            feats, real, _ = self.crop(feats, real, self._valid_frames(batch, feats.shape[1]))
        with self.autocast():
            outputs = self.model("vocoder")(feats)
        n = min(real.shape[-1], min(o.shape[-1] for o in outputs))
        fake = torch.cat([o[..., :n] for o in outputs], dim=0)  # every WaveFit iteration is trained
        return adversarial_step(self, self._gan_losses(), list(self.args.discriminators), fake, real[..., :n],
                                int(self.args.discriminator_steps), int(self.args.sub_batches))

    def _valid_frames(self, batch: dict[str, Any], frames: int) -> torch.Tensor:
        lengths = batch.get("lengths")
        if lengths is None:
            return torch.full((batch["clean"].shape[0],), frames, dtype=torch.long)
        return torch.tensor([self.raw("feature_cleaner").num_frames(int(n), int(batch["sr"])) for n in lengths])

    def _gan_losses(self) -> GanLosses:
        # losses.vocoder: generator side; losses.discriminator: D's objective (else G's GAN terms)
        return GanLosses.split(self.losses_for("vocoder"), self.losses.get("discriminator"))

    @torch.no_grad()
    def synthesize(self, batch: dict[str, Any]) -> tuple[torch.Tensor, int]:
        feats = self.features(self._level(batch)).float()
        with self.autocast():
            wave = self.raw("vocoder").infer(feats)
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
        cleaner = self.raw("feature_cleaner")
        # a cleaner that reads more than audio (Miipher-1: phonemes, text_lengths) names those batch keys
        extra = {k: batch[k] for k in getattr(cleaner, "conditioning", ()) if k in batch}
        return cleaner(batch["degraded"], int(batch["sr"]), batch.get("lengths"), **extra)
