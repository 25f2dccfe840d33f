"""Exponential moving average of a module's trainable weights.

Only parameters that require gradients are tracked: frozen backbones never change, so
shadowing them would double their memory for nothing.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class EMA:
    """Shadow copies (float32) of `module`'s trainable parameters, updated with `decay`."""

    def __init__(self, module: nn.Module, decay: float, start_step: int = 0) -> None:
        assert 0.0 < decay < 1.0, f"EMA decay must be in (0, 1), got {decay}"
        self.module = module
        self.decay = decay
        self.start_step = start_step
        self.shadow = {n: p.detach().float().clone() for n, p in self._params()}

    def _params(self) -> Iterator[tuple[str, nn.Parameter]]:
        return ((n, p) for n, p in self.module.named_parameters() if p.requires_grad)

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Blend in the current weights; before `start_step` the shadow just copies them."""
        decay = self.decay if step >= self.start_step else 0.0
        for name, p in self._params():
            self.shadow[name].lerp_(p.detach().float(), 1.0 - decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {n: t.detach().cpu().contiguous() for n, t in self.shadow.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = sorted(set(self.shadow) - set(state))
        assert not missing, f"EMA state lacks {missing[:3]}... ({len(missing)} tensors)"
        for name, t in self.shadow.items():
            t.copy_(state[name].to(t.device))

    @contextmanager
    @torch.no_grad()
    def swapped_in(self) -> Iterator[nn.Module]:
        """Temporarily load the averaged weights into the module (validation, export)."""
        backup = {n: p.detach().clone() for n, p in self._params()}
        for name, p in self._params():
            p.copy_(self.shadow[name].to(p.dtype))
        try:
            yield self.module
        finally:
            for name, p in self._params():
                p.copy_(backup[name])
