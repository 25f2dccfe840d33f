"""Human-feedback loss: minus the MOS a frozen, differentiable predictor gives the estimate.

FINALLY's stage 3 adds it (weight 20) with UTMOSv2 at 16 kHz. The predictor is loaded when the
loss is built, so missing weights fail the run before the first step, not at it.
"""
from __future__ import annotations

import torch
from torch import nn

from restorekit.errors import ConfigError
from restorekit.losses import LOSSES
from restorekit.losses.base import Loss
from restorekit.metrics.nonintrusive import UTMOS_REPO

PREDICTORS = ("utmosv2", "wvmos", "utmos22")


@LOSSES.register("utmos_loss")
class UtmosLoss(Loss):
    """-mean(predicted MOS) of the estimate (B, T) at ``sample_rate`` Hz (scalar, MOS units); reference unused.

    ``predictor``: ``utmosv2`` (UTMOSv2 fusion_stage3, FINALLY's choice), ``wvmos`` (WV-MOS) or
    ``utmos22`` (UTMOS22 strong learner via torch.hub, as the ``utmos`` metric loads it). Audio
    is resampled to the predictor's 16 kHz with julius, on its device. The predictor is frozen
    (no parameter takes gradients, eval mode) but gradients flow back to the estimate.
    ``checkpoint`` / ``encoder`` / ``trust_checkpoint``: the released weights, the wav2vec 2.0
    config and whether to unpickle objects beyond tensors (utmosv2, wvmos; see those metrics).
    ``repo`` / ``source``: where utmos22 comes from (torch.hub repo or local clone); its code
    imports torchaudio, which restorekit does not install.
    ``forward(estimate, reference=None)``: ``reference`` is ignored (the loss needs no target).
    """

    def __init__(self, predictor: str = "utmosv2", checkpoint: str | None = None,
                 encoder: str = "facebook/wav2vec2-base", sample_rate: int = 16000, trust_checkpoint: bool = False,
                 repo: str = UTMOS_REPO, source: str = "github") -> None:
        super().__init__()
        self.sample_rate = int(sample_rate)
        self.kind = predictor
        self.predictor = build_predictor(predictor, checkpoint, encoder, trust_checkpoint, repo, source)

    def forward(self, estimate: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        if estimate.ndim == 3 and estimate.shape[1] == 1:  # (B, 1, T) generator outputs
            estimate = estimate[:, 0]
        return -self.predictor(estimate, self.sample_rate).mean()


def build_predictor(predictor: str, checkpoint: str | None, encoder: str, trust_checkpoint: bool,
                    repo: str, source: str) -> nn.Module:
    """The frozen predictor module: ``(wave (B, T), sr) -> MOS (B,)``."""
    from restorekit.models.mos import load_utmosv2, load_wvmos

    if predictor == "utmosv2":
        return load_utmosv2(checkpoint, encoder)
    if predictor == "wvmos":
        return load_wvmos(checkpoint, encoder, trust_checkpoint)
    if predictor == "utmos22":
        return Utmos22(repo, source)
    raise ConfigError(f"utmos_loss: predictor '{predictor}' is unknown; choose one of {list(PREDICTORS)}")


class Utmos22(nn.Module):
    """The torch.hub UTMOS22 strong learner as a frozen ``(wave (B, T), sr) -> MOS (B,)`` module at 16 kHz."""

    sample_rate = 16000

    def __init__(self, repo: str, source: str) -> None:
        from restorekit.metrics.nonintrusive import load_utmos
        from restorekit.optional import missing

        super().__init__()
        if missing(["torchaudio"]):
            # SpeechMOS's model module imports torchaudio (for a resample that is a no-op at 16 kHz)
            raise ConfigError(
                f"utmos_loss: predictor utmos22 runs {repo}, whose code imports torchaudio, which is not "
                "installed (restorekit does not depend on it); install a torchaudio built for "
                "your torch, or use predictor utmosv2 or wvmos"
            )
        self.model = load_utmos(repo, "utmos22_strong", source)
        self.model.requires_grad_(False)

    def train(self, mode: bool = True) -> Utmos22:
        return super().train(False)

    def forward(self, wave: torch.Tensor, sr: int) -> torch.Tensor:
        import julius

        if int(sr) != self.sample_rate:
            wave = julius.resample_frac(wave.float(), int(sr), self.sample_rate)
        # cuDNN's LSTM has no backward in eval mode; the native kernel gives the same values and one
        with torch.backends.cudnn.flags(enabled=False):
            return self.model(wave, self.sample_rate)
