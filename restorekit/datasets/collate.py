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
    Items with ``context`` (FINALLY's WavLM row) add ``context`` (B, Tc_max) zero-padded,
    ``context_lengths`` LongTensor (B,) and ``context_offset`` LongTensor (B,) (samples).
    Items with ``text`` give ``text``: list[str] (None where an item has none). Items with
    ``phonemes`` (LongTensor (L,) of ids in ``restorekit.text.PHONEME_SYMBOLS``) give
    ``phonemes`` (B, L_max) long padded with 0 (the pad id) and ``text_lengths`` (B,) long.
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
    batch.update(_context(items))
    batch.update(_phonemes(items))
    known = {"clean", "degraded", "sr", "name", "degradations", "context", "context_offset", "phonemes"}
    for key in sorted({k for it in items for k in it} - known):
        batch[key] = [it.get(key) for it in items]
    return batch


def _all_or_none(items: Sequence[dict[str, Any]], key: str, setting: str) -> bool:
    """Whether the items carry ``key``: all of them (True) or none (False); a mix is a DataError."""
    has = [it["name"] for it in items if key in it]
    if has and len(has) < len(items):
        raise DataError(f"cannot batch items with and without {key} (with: {has}); give every dataset "
                        f"in the loader the same {setting}")
    return bool(has)


def _context(items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """The context keys of a batch: all items have a context, or none does."""
    if not _all_or_none(items, "context", "context_seconds"):
        return {}
    return {
        "context": pad_stack([it["context"] for it in items]),
        "context_lengths": torch.tensor([len(it["context"]) for it in items], dtype=torch.long),
        "context_offset": torch.tensor([int(it["context_offset"]) for it in items], dtype=torch.long),
    }


def _phonemes(items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """``phonemes`` (B, L_max) long, 0-padded, and ``text_lengths`` (B,): all items have phonemes, or none."""
    if not _all_or_none(items, "phonemes", "phonemes setting"):
        return {}
    seqs = [torch.as_tensor(it["phonemes"], dtype=torch.long) for it in items]
    out = torch.zeros(len(seqs), max(len(s) for s in seqs), dtype=torch.long)  # 0 = PAD_ID
    for row, s in zip(out, seqs):
        row[: len(s)] = s
    return {"phonemes": out, "text_lengths": torch.tensor([len(s) for s in seqs], dtype=torch.long)}
