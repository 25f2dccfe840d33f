"""Batching: zero-pad items to the longest, add ``lengths``; the contract's batch dict."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from restorekit.errors import DataError


def pad_stack(waves: Sequence[torch.Tensor]) -> torch.Tensor:
    """``(B, T_max)`` float32, each row zero-padded at the end."""
    out = torch.zeros(len(waves), max(len(w) for w in waves), dtype=torch.float32)
    for row, w in zip(out, waves):
        row[: len(w)] = w
    return out


def collate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Items -> ``{"clean": (B, T), "degraded": (B, T), "lengths": (B,), "sr", "names", "degradations"}``.

    ``clean`` is present only when every item has it (``audio_folder`` gives inputs only).
    Extra per-item values (e.g. ``path``) come back as lists under the same key.
    """
    if not items:
        raise DataError("collate got an empty batch; check that the dataset is not empty")
    rates = {int(it["sr"]) for it in items}
    if len(rates) > 1:
        names = [it["name"] for it in items]
        raise DataError(f"cannot batch items at different sample rates {sorted(rates)} ({names}); "
                        "set the dataset's sample_rate so every item is resampled to one rate")
    batch: dict[str, Any] = {
        "degraded": pad_stack([it["degraded"] for it in items]),
        "lengths": torch.tensor([len(it["degraded"]) for it in items], dtype=torch.long),
        "sr": rates.pop(),
        "names": [it["name"] for it in items],
        "degradations": [it.get("degradations", []) for it in items],
    }
    if all("clean" in it for it in items):
        batch["clean"] = pad_stack([it["clean"] for it in items])
    known = {"clean", "degraded", "sr", "name", "degradations"}
    for key in sorted({k for it in items for k in it} - known):
        batch[key] = [it.get(key) for it in items]
    return batch
