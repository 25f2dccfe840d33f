"""Losses: pure functions of tensors, forward(estimate, reference) -> scalar.

Importing this package registers every component in it.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from restorekit.registry import Registry

LOSSES = Registry("losses")

from restorekit.errors import ConfigError  # noqa: E402
from restorekit.losses import adversarial, codec, feature, lmos, mos, pesq, spectral  # noqa: E402,F401  (registers)
from restorekit.losses.base import GANLoss, Loss, WeightedLoss  # noqa: E402


def build_losses(nodes: Iterable[Any] | None, where: str = "losses", **injected: Any) -> list[WeightedLoss]:
    """Build a config loss list ``[{name, weight, args}, ...]``; ``weight`` defaults to 1.0.

    A weight of 0 means the loss is computed and logged but gives no gradient (the caller's job).
    ``injected`` arguments (e.g. ``sample_rate``) are passed to the losses that accept them.
    """
    built = []
    for i, node in enumerate(nodes or []):
        at = f"{where}[{i}]"
        weight = _weight(node, at)
        name = str(node["name"]) if hasattr(node, "__getitem__") and "name" in node else ""
        accepted = {p.name for p in LOSSES.entry(name, at).params()} if name else set()
        extra = {k: v for k, v in injected.items() if k in accepted and k not in (node.get("args") or {})}
        built.append(WeightedLoss(name, weight, LOSSES.build(node, where=at, extra_keys=("weight",), **extra)))
    return built


def _weight(node: Any, where: str) -> float:
    weight = node.get("weight", 1.0) if hasattr(node, "get") else 1.0
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
        raise ConfigError(f"{where}.weight must be a number >= 0 (0 = log only), got {weight!r}")
    return float(weight)


__all__ = ["LOSSES", "Loss", "GANLoss", "WeightedLoss", "build_losses"]
