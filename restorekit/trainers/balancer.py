"""EnCodec-style gradient balancer: loss weights as fractions of the gradient at the generator's output.

Switched on for any adversarial stage with ``trainer.args.balancer``::

    balancer: {total_norm: 1.0, ema_decay: 0.999, weights: {hinge_gan: 4, feature_matching: 4}}

Each balanced loss's gradient with respect to the generator output (``(B, samples)``) is
rescaled so that its norm is ``weight / sum(weights) * total_norm``; the rescaled gradients are
summed and pushed through the generator in one backward pass. The norm of a loss's gradient is
the L2 norm per item, averaged over the batch, averaged across DDP ranks, and tracked with a
bias-corrected exponential moving average (decay ``ema_decay``), so one odd batch does not swing
the scale (EnCodec, Défossez et al. 2022, and audiocraft's balancer; written here from those
facts). A loss of the generator's list that the balancer does not name keeps its list weight
(its gradient is added unscaled); losses that do not pass through the output (a codec's
commitment or distillation) are added to the generator's loss as usual.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist

from restorekit.errors import ConfigError

KEYS = ("total_norm", "ema_decay", "weights", "epsilon")


class Balancer:
    """Rescale per-loss output gradients to fixed shares of ``total_norm``; see the module docstring."""

    def __init__(self, weights: Mapping[str, float], total_norm: float = 1.0, ema_decay: float = 0.999,
                 epsilon: float = 1e-12) -> None:
        self.weights = {str(k): float(v) for k, v in weights.items()}
        self.total_norm = float(total_norm)
        self.ema_decay = float(ema_decay)
        self.epsilon = float(epsilon)
        # bias-corrected EMA per loss: sum of decayed norms and sum of decayed counts
        self._sums: dict[str, float] = {}
        self._counts: dict[str, float] = {}

    @classmethod
    def from_config(cls, node: Any, loss_names: list[str], where: str = "trainer.args.balancer") -> Balancer | None:
        """The balancer a config node describes (None for an empty node); names checked against the losses."""
        node = dict(node or {})
        if not node:
            return None
        for key in node:
            if key not in KEYS:
                raise ConfigError(f"{where}.{key} is not a balancer setting; settings: {', '.join(KEYS)}")
        weights = dict(node.get("weights") or {})
        if not weights:
            raise ConfigError(f"{where}.weights is empty: name the generator losses to balance with their shares, "
                              "e.g. weights: {hinge_gan: 4, feature_matching: 4}")
        for name, w in weights.items():
            if name not in loss_names:
                raise ConfigError(f"{where}.weights.{name}: the generator has no loss '{name}'; its losses: "
                                  f"{', '.join(loss_names) or 'none'} (log keys without 'loss/')")
            if isinstance(w, bool) or not isinstance(w, (int, float)) or w <= 0:
                raise ConfigError(f"{where}.weights.{name} must be a number > 0, got {w!r}")
        decay = node.get("ema_decay", 0.999)
        if not 0.0 <= float(decay) < 1.0:
            raise ConfigError(f"{where}.ema_decay must be in [0, 1), got {decay}")
        if float(node.get("total_norm", 1.0)) <= 0:
            raise ConfigError(f"{where}.total_norm must be > 0, got {node.get('total_norm')}")
        return cls(weights, float(node.get("total_norm", 1.0)), float(decay), float(node.get("epsilon", 1e-12)))

    def combine(self, grads: Mapping[str, torch.Tensor], plain: Mapping[str, float] | None = None
                ) -> tuple[torch.Tensor, dict[str, float]]:
        """The output gradient: balanced ``grads`` rescaled and summed, other ``grads`` times ``plain[name]``.

        ``grads`` maps loss names to the gradient of that (unweighted) loss w.r.t. the output,
        all of one shape ``(B, ...)``. Returns the summed gradient and the scalars
        ``balancer/<name>_norm`` (the tracked norm) to log.
        """
        plain = plain or {}
        names = [n for n in grads if n in self.weights]
        norms = self._tracked_norms({n: _mean_item_norm(grads[n]) for n in names})
        total_weight = sum(self.weights.values())
        out = torch.zeros_like(next(iter(grads.values())))
        for name, grad in grads.items():
            if name in self.weights:
                share = self.weights[name] / total_weight * self.total_norm
                out = out + grad * (share / (self.epsilon + norms[name]))
            else:
                out = out + grad * float(plain.get(name, 1.0))
        return out, {f"balancer/{n}_norm": norms[n] for n in names}

    def _tracked_norms(self, norms: dict[str, torch.Tensor]) -> dict[str, float]:
        """Norms averaged over ranks, then folded into the EMA (identical state on every rank)."""
        names = sorted(norms)
        if not names:
            return {}
        values = torch.stack([norms[n].detach().float() for n in names])
        if dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(values)
            values /= dist.get_world_size()
        out = {}
        for name, value in zip(names, values.tolist()):
            self._sums[name] = self._sums.get(name, 0.0) * self.ema_decay + value
            self._counts[name] = self._counts.get(name, 0.0) * self.ema_decay + 1.0
            out[name] = self._sums[name] / self._counts[name]
        return out

    def state_dict(self) -> dict[str, dict[str, float]]:
        return {"sums": dict(self._sums), "counts": dict(self._counts)}

    def load_state_dict(self, state: Mapping[str, Mapping[str, float]]) -> None:
        self._sums = dict(state.get("sums", {}))
        self._counts = dict(state.get("counts", {}))


def _mean_item_norm(grad: torch.Tensor) -> torch.Tensor:
    """L2 norm of each item's gradient, averaged over the batch (the scale does not grow with B)."""
    dims = tuple(range(1, grad.dim()))
    return grad.float().norm(p=2, dim=dims).mean() if dims else grad.float().abs().mean()


__all__ = ["Balancer"]
