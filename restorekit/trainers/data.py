"""Training data: an order deterministic from (seed, epoch), sharded over ranks, resumable mid-epoch;
and batch audio brought to the rate a model reads."""
from __future__ import annotations

import itertools
from collections.abc import Iterator

import julius
import torch
from torch.utils.data import Dataset, DistributedSampler


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
