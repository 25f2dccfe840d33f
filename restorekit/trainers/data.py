"""Training data: an order deterministic from (seed, epoch), sharded over ranks, resumable mid-epoch;
a schedule of corpora by step (progressive training); and batch audio brought to the rate a model reads."""
from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import julius
import torch
from omegaconf import DictConfig, ListConfig
from torch.utils.data import Dataset, DistributedSampler

from restorekit.errors import ConfigError


def resample(wave: torch.Tensor, sr_in: int, sr_out: int) -> torch.Tensor:
    """(B, T) from ``sr_in`` to ``sr_out`` on the tensor's device (julius), unchanged when equal."""
    return wave if sr_in == sr_out else julius.resample_frac(wave, int(sr_in), int(sr_out))


class ResumableSampler(DistributedSampler):
    """DistributedSampler that can start part-way into an epoch.

    The order of an epoch depends only on ``seed`` and the epoch number, so a resumed run
    skips the indices it already consumed (without loading them) and then sees exactly what
    an uninterrupted run would have seen. With one process it is a plain seeded shuffle.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int, shuffle: bool = True) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=True)
        self.start = 0

    def set_position(self, epoch: int, start: int) -> None:
        """Next iteration yields epoch ``epoch`` from its ``start``-th index on this rank."""
        self.set_epoch(epoch)
        self.start = start

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(super().__iter__(), self.start, None)

    def __len__(self) -> int:
        return max(0, super().__len__() - self.start)


@dataclass(frozen=True)
class Phase:
    """One corpus of a data schedule: its dataset node, config path, and the step it trains until."""

    node: Any
    where: str
    until_step: int | None  # None: to the end of training


def data_schedule(train: Any) -> list[Phase]:
    """``data.train`` as phases: one dataset node, or a list of ``{until_step, dataset}`` by rising step.

    Every entry but the last names the (global, optimizer) step at which the next corpus takes
    over; the last has no ``until_step`` (or null) and trains to the end. A resumed run finds its
    corpus from the step.
    """
    if not isinstance(train, (Sequence, ListConfig)) or isinstance(train, str):
        return [Phase(train, "data.train", None)]
    if len(train) == 0:
        raise ConfigError("data.train is an empty list; give one dataset node, or a list of "
                          "{until_step: N, dataset: {name, args}} with the last entry's until_step left out")
    phases, previous = [], 0
    for i, entry in enumerate(train):
        where = f"data.train[{i}]"
        phases.append(_phase(entry, where, last=i == len(train) - 1))
        until = phases[-1].until_step
        if until is not None and until <= previous:
            raise ConfigError(f"{where}.until_step ({until}) must be greater than the entry before's "
                              f"({previous}); list the corpora in the order they train")
        previous = until or previous
    return phases


def _phase(entry: Any, where: str, last: bool) -> Phase:
    if not isinstance(entry, (Mapping, DictConfig)) or "dataset" not in entry:
        raise ConfigError(f"{where} must be {{until_step: N, dataset: {{name, args}}}} (the last entry without "
                          f"until_step), got {entry!r}")
    extra = sorted(set(entry) - {"until_step", "dataset"})
    if extra:
        raise ConfigError(f"{where}.{extra[0]} is not a schedule key; an entry has until_step and dataset")
    until = entry.get("until_step")
    if last and until is not None:
        raise ConfigError(f"{where}.until_step is {until}, but the last corpus trains to the end of training; "
                          "remove its until_step (or set it to null)")
    if not last and (isinstance(until, bool) or not isinstance(until, int) or until < 1):
        raise ConfigError(f"{where}.until_step must be a step >= 1 (only the last entry trains to the end), "
                          f"got {until!r}")
    return Phase(entry["dataset"], f"{where}.dataset", until)


def phase_at(phases: list[Phase], step: int) -> int:
    """Index of the phase that trains the step after ``step`` (``step`` optimizer steps done)."""
    for i, p in enumerate(phases):
        if p.until_step is None or step < p.until_step:
            return i
    return len(phases) - 1
