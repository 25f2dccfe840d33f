"""Optimizers: thin, documented wrappers of torch.optim so configs select them by name."""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from restorekit.errors import ConfigError
from restorekit.optim import OPTIMIZERS


def _betas(betas: Sequence[float]) -> tuple[float, float]:
    if len(betas) != 2 or not all(0.0 <= float(b) < 1.0 for b in betas):
        raise ConfigError(f"optimizer betas must be two numbers in [0, 1), got {list(betas)}")
    return float(betas[0]), float(betas[1])


def _params(params: Iterable[torch.nn.Parameter]) -> list[torch.nn.Parameter]:
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ConfigError("optimizer got no trainable parameters; check which roles it updates")
    return params


@OPTIMIZERS.register("adamw")
def adamw(
    params: Iterable[torch.nn.Parameter],
    lr: float = 2e-4,
    betas: Sequence[float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.01,
) -> torch.optim.Optimizer:
    """AdamW (decoupled weight decay); `params` is injected by the trainer."""
    return torch.optim.AdamW(_params(params), lr=float(lr), betas=_betas(betas), eps=float(eps),
                             weight_decay=float(weight_decay))


@OPTIMIZERS.register("adam")
def adam(
    params: Iterable[torch.nn.Parameter],
    lr: float = 2e-4,
    betas: Sequence[float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """Adam (L2 weight decay added to the gradient); `params` is injected by the trainer."""
    return torch.optim.Adam(_params(params), lr=float(lr), betas=_betas(betas), eps=float(eps),
                            weight_decay=float(weight_decay))
