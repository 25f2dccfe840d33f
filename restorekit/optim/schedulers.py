"""Learning-rate schedulers as multipliers of the optimizer's base learning rate.

Each one is a ``LambdaLR`` stepped once per optimizer step, so its only state is the step
count (``last_epoch``), which checkpoints save and restore exactly.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.optim.lr_scheduler import LambdaLR

from restorekit.errors import ConfigError
from restorekit.optim import SCHEDULERS


def _check(name: str, value: float, low: float, high: float | None = None) -> None:
    if value < low or (high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ConfigError(f"scheduler argument {name} must be {bound}, got {value}")


def _warmup(step: int, warmup_steps: int) -> float:
    # step 0 trains at 1/warmup of the rate rather than 0, so no update is wasted.
    return min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0


def _lambda(optimizer: torch.optim.Optimizer, fn: Callable[[int], float]) -> LambdaLR:
    return LambdaLR(optimizer, lr_lambda=fn)


@SCHEDULERS.register("constant")
def constant(optimizer: torch.optim.Optimizer) -> LambdaLR:
    """Constant learning rate (the optimizer's lr at every step)."""
    return _lambda(optimizer, lambda step: 1.0)


@SCHEDULERS.register("linear_warmup")
def linear_warmup(
    optimizer: torch.optim.Optimizer, warmup_steps: int = 0, total_steps: int = 0, final_ratio: float = 0.0
) -> LambdaLR:
    """Linear warm-up over `warmup_steps`, then linear decay to `final_ratio`*lr at `total_steps` (0: no decay)."""
    _check("warmup_steps", warmup_steps, 0)
    _check("final_ratio", final_ratio, 0.0, 1.0)

    def fn(step: int) -> float:
        if step < warmup_steps or total_steps <= warmup_steps:
            return _warmup(step, warmup_steps)
        done = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
        return 1.0 - (1.0 - final_ratio) * done

    return _lambda(optimizer, fn)


@SCHEDULERS.register("cosine_warmup")
def cosine_warmup(
    optimizer: torch.optim.Optimizer, warmup_steps: int = 0, total_steps: int = 1, final_ratio: float = 0.0
) -> LambdaLR:
    """Linear warm-up over `warmup_steps`, then half-cosine decay to `final_ratio`*lr at `total_steps`."""
    _check("warmup_steps", warmup_steps, 0)
    _check("final_ratio", final_ratio, 0.0, 1.0)
    if total_steps <= warmup_steps:
        raise ConfigError(
            f"cosine_warmup: total_steps ({total_steps}) must exceed warmup_steps ({warmup_steps}); "
            "set total_steps to the run's max_steps"
        )

    def fn(step: int) -> float:
        if step < warmup_steps:
            return _warmup(step, warmup_steps)
        done = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
        return final_ratio + (1.0 - final_ratio) * 0.5 * (1.0 + math.cos(math.pi * done))

    return _lambda(optimizer, fn)


@SCHEDULERS.register("exponential")
def exponential(optimizer: torch.optim.Optimizer, gamma: float = 0.999, every: int = 1,
                warmup_steps: int = 0) -> LambdaLR:
    """Multiply the learning rate by `gamma` every `every` steps (HiFi-GAN/WaveFit/FINALLY style decay),
    after an optional linear warm-up over `warmup_steps` (FINALLY stage 3: 10)."""
    _check("gamma", gamma, 0.0, 1.0)
    _check("every", every, 1)
    _check("warmup_steps", warmup_steps, 0)

    def fn(step: int) -> float:
        if step < warmup_steps:
            return _warmup(step, warmup_steps)
        return gamma ** ((step - warmup_steps) // every)

    return _lambda(optimizer, fn)
