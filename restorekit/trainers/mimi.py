"""Mimi codec trainer (Moshi, arXiv 2410.00037): adversarial-only, with semantic distillation and commitment.

The codec (``models.codec``, a ``mimi``) reconstructs clean speech; the discriminator roles in
``trainer.args.discriminators`` (Mimi: one ``ms_stft``) judge it through the shared adversarial
step, which also gives discriminator_steps, sub_batches and the gradient balancer. The codec's
own terms, which do not pass through its output, are added to the same single backward:
``commitment`` (the quantiser's term) and ``semantic_distillation`` (the semantic quantiser's
output through the trainer-built ``semantic_head``, a Linear to the teacher's size, against
the frozen teacher's features, ``models.teacher``: ``wavlm`` / ``hubert``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from restorekit.errors import ConfigError
from restorekit.losses.codec import CommitmentLoss, SemanticDistillationLoss
from restorekit.trainers import TRAINERS
from restorekit.trainers.base import BaseTrainer, LossTerm, role_seed, setting
from restorekit.trainers.data import resample
from restorekit.trainers.gan import GanArgs, GanLosses, adversarial_step, check_gan_args

CODEC_LOSSES = (CommitmentLoss, SemanticDistillationLoss)


@dataclass
class MimiArgs(GanArgs):
    """The adversarial settings (balancer included) of the codec stage."""

    discriminators: list = setting(["discriminators"], "model roles that judge the codec (their own optimizer)")


@TRAINERS.register("mimi_codec")
class MimiCodecTrainer(BaseTrainer):
    """Mimi codec: adversarial-only reconstruction (hinge + feature matching) + commitment + semantic distillation.

    Roles: ``codec`` (``mimi``), the discriminator roles in ``trainer.args.discriminators`` (Mimi:
    ``ms_stft``, 32 filters, n_fft 1024/2048/512/256/128) and, for distillation, ``teacher`` (a
    frozen ``wavlm`` / ``hubert``); the trainer adds ``semantic_head`` (Linear codec dimension ->
    teacher dimension, trained with the codec, not exported). Losses: ``losses.generator`` (GAN
    terms and optional waveform reconstruction terms, e.g. ``mel_l1`` for the "with
    reconstruction" baseline), ``losses.codec`` (``commitment``, ``semantic_distillation``) and
    optionally ``losses.discriminator``. Optimizers ``generator`` (codec + head; Mimi: AdamW 8e-4,
    betas 0.5/0.9, ``decay_only: [encoder_transformer, decoder_transformer]``) and ``discriminator``. Reads ``clean`` only,
    cut to whole codec frames. Export: the codec (weight EMA) as ``codec``, which the
    ``mimi_resynthesis`` enhancer and the ``neural_codec`` degradation load.
    """

    Args = MimiArgs
    ema_role = "codec"
    export_roles = ("codec",)

    @property
    def trainable_roles(self) -> tuple[str, ...]:  # type: ignore[override]
        head = ("semantic_head",) if self._distills() else ()
        return ("codec", *head, *self.args.discriminators)

    def roles(self) -> list[str]:
        return ["codec", *(["teacher"] if self._distills() else []), *self.args.discriminators]

    def optimizer_roles(self) -> dict[str, list[str]]:
        groups = {"generator": ["codec", *(["semantic_head"] if self._distills() else [])]}
        if self.args.discriminators:
            groups["discriminator"] = list(self.args.discriminators)
        return groups

    def _distills(self) -> bool:
        """True when losses.codec lists semantic_distillation (then the teacher is needed)."""
        losses = self.cfg.get("losses")
        nodes = losses.get("codec") or [] if isinstance(losses, (dict, DictConfig)) else []
        return any(str(n.get("name")) == "semantic_distillation" for n in nodes)

    def check_inputs(self) -> None:
        super().check_inputs()
        check_gan_args(self.args)
        losses = self.cfg.get("losses")
        if not isinstance(losses, (dict, DictConfig)) or "generator" not in losses:
            raise ConfigError("mimi_codec reads losses as groups: losses: {generator: [hinge_gan, feature_matching, "
                              "...], codec: [commitment, semantic_distillation], discriminator: [...] (optional)}")
        other = [str(n.get("name")) for n in losses.get("codec") or []
                 if str(n.get("name")) not in ("commitment", "semantic_distillation")]
        if other:
            raise ConfigError(f"losses.codec lists '{other[0]}'; it holds the codec's own terms (commitment, "
                              "semantic_distillation); put waveform and GAN losses under losses.generator")

    def build_models(self) -> dict[str, nn.Module]:
        models = super().build_models()
        if self._distills():
            dim = int(models["codec"].config["dimension"])
            torch.manual_seed(role_seed(self.seed, "semantic_head"))
            models["semantic_head"] = nn.Linear(dim, int(models["teacher"].feature_dim)).to(self.device)
            self.seed_everything(self.seed + self.dist.rank)
        return models

    # ---------------------------------------------------------------- the step
    def target(self, batch: dict[str, Any]) -> torch.Tensor:
        """Clean audio at the codec's rate, cut to whole codec frames."""
        codec = self.raw("codec")
        wave = resample(batch["clean"], int(batch["sr"]), int(codec.sample_rate))
        frames = wave.shape[-1] // codec.hop
        if frames < 1:
            raise ConfigError(f"mimi_codec: training segments of {wave.shape[-1]} samples at {codec.sample_rate} Hz "
                              f"are shorter than one codec frame ({codec.hop}); raise the dataset's segment_seconds")
        return wave[..., : frames * codec.hop]

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        real = self.target(batch)
        with self.autocast():
            out = self.model("codec")(real)
        extra, scalars = self.codec_losses(out, real)
        losses = GanLosses.split(self.losses_for("generator"), self.losses.get("discriminator"))
        scalars.update(adversarial_step(self, losses, list(self.args.discriminators), out["wave"], real,
                                        int(self.args.discriminator_steps), int(self.args.sub_batches), extra))
        scalars["codec/n_q"] = float(out["n_q"])
        scalars["codec/quantized_fraction"] = float(out["quantized_fraction"])
        return scalars

    def codec_losses(self, out: dict[str, Any], real: torch.Tensor) -> tuple[torch.Tensor | None, dict[str, float]]:
        """Weighted sum of losses.codec (None when empty) and their scalars."""
        terms: list[LossTerm] = self.losses.get("codec", [])
        if not terms:
            return None, {}
        total, scalars = torch.zeros((), device=self.device), {}
        for t in terms:
            with torch.autocast(device_type=self.device.type, enabled=False):
                value = self._codec_term(t, out, real)
            if t.weight != 0:
                total = total + t.weight * value
            scalars[t.key] = float(value.detach())
        return total, scalars

    def _codec_term(self, term: LossTerm, out: dict[str, Any], real: torch.Tensor) -> torch.Tensor:
        if isinstance(term.fn, CommitmentLoss):
            return term.fn(out["commitment"].float())
        with torch.no_grad():
            teacher = self.raw("teacher")(real, int(self.raw("codec").sample_rate))
        projected = self.model("semantic_head")(out["semantic"].float())
        return term.fn(projected, teacher.float())

    @torch.no_grad()
    def synthesize(self, batch: dict[str, Any]) -> tuple[torch.Tensor, int]:
        """The codec's round trip of the clean audio at all its codebooks."""
        codec = self.raw("codec")
        real = self.target(batch)
        with self.autocast():
            wave = codec.decode(codec.encode(real))
        return wave[..., : real.shape[-1]].float(), int(codec.sample_rate)

    def valid_losses(self, batch: dict[str, Any]) -> dict[str, float]:
        """The generator's waveform losses on a validation batch (valid/loss/<name>)."""
        wave, _ = self.synthesize(batch)
        waveform = GanLosses.split(self.losses_for("generator")).waveform
        return self.weighted_losses(waveform, wave, self.target(batch))[1]


__all__ = ["MimiCodecTrainer", "CODEC_LOSSES"]
