"""``chain``: an ordered list of degradations, each applied with a probability.

Deterministic for a seed: datasets derive one generator per sample with
``sample_rng(seed, epoch, index)``, so an item is the same whichever worker draws it and
whatever was drawn before it. The chain returns what it applied, with parameters:
``{"applied": [{"name": ..., **params}, ...]}``.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from restorekit.augmentations import AUGMENTATIONS
from restorekit.augmentations.base import Augmentation
from restorekit.errors import ConfigError, RestorekitError


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator for one item: a SeedSequence of (seed, epoch, index), all >= 0."""
    for what, value in (("seed", seed), ("epoch", epoch), ("index", index)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ConfigError(f"sample_rng: {what} must be a non-negative integer, got {value!r}")
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch), int(index)]))


class _Op:
    """One built chain entry: the augmentation, its name, probability and config path."""

    def __init__(self, node: Any, where: str) -> None:
        if not isinstance(node, Mapping):
            raise ConfigError(f"{where} must be a mapping {{name, p, args}}, got {node!r}")
        self.name = str(node.get("name"))
        self.where = where
        self.p = _probability(node.get("p", 1.0), f"{where}.p")
        self.aug = AUGMENTATIONS.build(node, where=where, extra_keys=("p",))


def _probability(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ConfigError(f"{where} must be a probability between 0 and 1, got {value!r}")
    return float(value)


@AUGMENTATIONS.register("chain")
class Chain(Augmentation):
    """Ordered ops {name, p, args}, each applied with probability p; params {"applied": [...]}.

    ``max_ops`` keeps at most that many of the ops drawn (a random subset, order kept);
    ``shuffle`` draws a new order per sample; ``p_clean`` leaves a sample untouched.
    Output peaks above ``peak_limit`` are scaled down (recorded as ``peak_normalize``) so
    the degraded audio stays in [-1, 1]. ``path`` is the config path used in messages.
    """

    def __init__(
        self,
        ops: Sequence[Mapping[str, Any]],
        max_ops: int | None = None,
        shuffle: bool = False,
        p_clean: float = 0.0,
        peak_limit: float | None = 1.0,
        path: str = "degradations",
    ) -> None:
        if isinstance(ops, (str, Mapping)) or not isinstance(ops, Sequence):
            raise ConfigError(f"{path}.args.ops must be a list of {{name, p, args}} nodes, got {ops!r}")
        self.ops = [_Op(node, f"{path}.args.ops[{i}]") for i, node in enumerate(ops)]
        if max_ops is not None and (isinstance(max_ops, bool) or not isinstance(max_ops, int) or max_ops < 1):
            raise ConfigError(f"{path}.args.max_ops must be a positive integer or null, got {max_ops!r}")
        self.max_ops = max_ops
        self.shuffle = bool(shuffle)
        self.p_clean = _probability(p_clean, f"{path}.args.p_clean")
        self.peak_limit = peak_limit

    def select(self, rng: np.random.Generator) -> list[_Op]:
        """The ops to apply to one sample, in order (all decisions drawn before any op runs)."""
        if self.p_clean and rng.random() < self.p_clean:
            return []
        order = rng.permutation(len(self.ops)) if self.shuffle else np.arange(len(self.ops))
        coins = rng.random(len(self.ops))
        chosen = [int(i) for i in order if coins[i] < self.ops[i].p]
        if self.max_ops is not None and len(chosen) > self.max_ops:
            keep = set(rng.choice(len(chosen), self.max_ops, replace=False).tolist())
            chosen = [c for k, c in enumerate(chosen) if k in keep]
        return [self.ops[i] for i in chosen]

    def apply(self, wave: np.ndarray, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
        applied: list[dict[str, Any]] = []
        out = wave
        for op in self.select(rng):
            out, params = run_op(op.aug, op.name, op.where, out, sr, rng)
            applied.append({"name": op.name, **params})
        out, gain = self._limit(out)
        if gain is not None:
            applied.append({"name": "peak_normalize", "gain_db": gain})
        return (out.copy() if out is wave else out), {"applied": applied}

    def _limit(self, wave: np.ndarray) -> tuple[np.ndarray, float | None]:
        peak = float(np.max(np.abs(wave))) if wave.size else 0.0
        if self.peak_limit is None or peak <= self.peak_limit:
            return wave, None
        return wave * np.float32(self.peak_limit / peak), 20 * float(np.log10(self.peak_limit / peak))


def run_op(
    aug: Augmentation, name: str, where: str, wave: np.ndarray, sr: int, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, Any]]:
    """Apply one op; any failure is re-raised naming the op (never swallowed)."""
    try:
        out, params = aug(wave, sr, rng)
    except RestorekitError as exc:  # a user mistake: same type, with the op prefixed
        raise type(exc)(f"{where} ({name}): {exc}") from exc
    except Exception as exc:  # a bug: keep the traceback, say which op and input
        raise RuntimeError(
            f"{where} ({name}) failed on {len(wave)} samples at {sr} Hz: {type(exc).__name__}: {exc}"
        ) from exc
    if not np.isfinite(out).all():
        raise RuntimeError(f"{where} ({name}) produced NaN/Inf samples at {sr} Hz; this is a bug in the op")
    return out, params
