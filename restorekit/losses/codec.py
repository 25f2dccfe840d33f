"""Codec losses: semantic distillation into a quantiser's output, and the quantiser's commitment term.

Both are pure functions of tensors. Where the parts live in a codec trainer (``mimi_codec``):
the teacher (a frozen SSL encoder, ``models.teacher``: ``wavlm`` / ``hubert``) makes the
reference features; the trainable ``Linear(codec dimension -> teacher dimension)`` that maps the
semantic quantiser's output into the teacher's space is the trainer's ``semantic_head`` role
(trained and checkpointed with the codec, not exported); this loss only compares the two.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from restorekit.errors import ConfigError
from restorekit.losses import LOSSES
from restorekit.losses.base import Loss

MODES = ("cosine", "log_sigmoid")


def pool_teacher(features: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Teacher features ``(B, T, D)`` average-pooled over time, non-causally: ``(B, ~T / stride, D)``.

    Each output frame averages ``kernel`` input frames centred on its own ``stride`` frames (the
    input is edge-padded by ``(kernel - stride) / 2`` on both sides), so frame i of the pooled
    sequence lines up with frame i of a codec running at ``1 / stride`` of the teacher's rate.
    """
    pad = (kernel - stride) // 2
    x = features.transpose(1, 2)
    if pad > 0:
        x = F.pad(x, (pad, kernel - stride - pad), mode="replicate")
    return F.avg_pool1d(x, kernel, stride, ceil_mode=True).transpose(1, 2)


@LOSSES.register("semantic_distillation")
class SemanticDistillationLoss(Loss):
    """Cosine distance between projected semantic latents ``(B, F, D)`` and pooled teacher features ``(B, T, D)``.

    ``reference`` (the teacher's features, e.g. WavLM at 50 Hz) is pooled non-causally with
    ``kernel`` / ``stride`` (8 / 4: 50 Hz -> 12.5 Hz, Mimi) and both are cut to the shorter
    length. ``mode: cosine`` gives mean(1 - cos) (Mimi); ``log_sigmoid`` mean(-log sigmoid(cos))
    (the 16 kHz reproduction). The reference is a target: no gradient flows into it.
    """

    def __init__(self, kernel: int = 8, stride: int = 4, mode: str = "cosine") -> None:
        super().__init__()
        if mode not in MODES:
            raise ConfigError(f"semantic_distillation: mode '{mode}' is not one of {', '.join(MODES)}")
        if not 1 <= int(stride) <= int(kernel):
            raise ConfigError(f"semantic_distillation: need 1 <= stride <= kernel, got kernel {kernel}, stride {stride}")
        self.kernel, self.stride, self.mode = int(kernel), int(stride), mode

    def forward(self, estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        if estimate.dim() != 3 or reference.dim() != 3 or estimate.shape[-1] != reference.shape[-1]:
            raise ConfigError(
                f"semantic_distillation: estimate (B, frames, D) and reference (B, frames, D) must share D, got "
                f"{tuple(estimate.shape)} and {tuple(reference.shape)}; the semantic head's output size must be the "
                "teacher's feature size")
        target = pool_teacher(reference.detach().float(), self.kernel, self.stride)
        n = min(estimate.shape[1], target.shape[1])
        cos = F.cosine_similarity(estimate[:, :n].float(), target[:, :n], dim=-1)
        return (1 - cos).mean() if self.mode == "cosine" else -F.logsigmoid(cos).mean()


@LOSSES.register("commitment")
class CommitmentLoss(Loss):
    """The quantiser's commitment term (a scalar the codec's forward returns, mse(latent, codes.detach())), passed through.

    A registered loss so its weight lives in the config's loss list like every other;
    ``reference`` is unused.
    """

    def forward(self, estimate: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        assert estimate.dim() == 0, f"commitment: expected the codec's scalar term, got shape {tuple(estimate.shape)}"
        return estimate


__all__ = ["SemanticDistillationLoss", "CommitmentLoss", "pool_teacher"]
