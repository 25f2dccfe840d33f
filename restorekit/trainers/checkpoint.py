"""Atomic, complete training checkpoints.

Layout of ``<output_dir>/ckpt``::

    step_00001000/            one whole checkpoint
        models.safetensors    trainable weights and buffers, keys "<role>.<param>"
        ema.safetensors       EMA shadow of the generator (absent when EMA is off)
        state.pt              optimizers, schedulers, scaler, step, data position, RNG states
        config.yaml           the resolved config of the run
    latest -> step_00001000   symlink, replaced atomically after a checkpoint is complete

A checkpoint is written into ``.tmp-<name>-<pid>`` and renamed into place, and ``latest`` is
moved only afterwards, so an interruption at any point leaves ``latest`` on the previous
whole checkpoint. Leftover temporary folders are removed by the next save.
"""
from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import load_file, save_file

from restorekit.errors import CheckpointError
from restorekit.models.export import check_finite_tensors

LATEST = "latest"
_STEP_RE = re.compile(r"^step_(\d+)$")
FILES = ("models.safetensors", "state.pt", "config.yaml")


def step_name(step: int) -> str:
    return f"step_{step:08d}"


def save(
    ckpt_root: Path,
    step: int,
    models: Mapping[str, torch.Tensor],
    state: dict[str, Any],
    config: DictConfig,
    ema: Mapping[str, torch.Tensor] | None = None,
    keep_last: int = 0,
) -> Path:
    """Write one checkpoint atomically, point ``latest`` at it, prune to ``keep_last``.

    Refuses (CheckpointError, nothing written, ``latest`` unchanged) when a weight is NaN/Inf:
    a checkpoint that cannot be resumed from must never replace one that can.
    """
    check_finite_tensors(models, f"checkpoint step {step} (models)")
    check_finite_tensors(ema or {}, f"checkpoint step {step} (EMA)")
    ckpt_root.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(ckpt_root)
    final = ckpt_root / step_name(step)
    tmp = ckpt_root / f".tmp-{final.name}-{os.getpid()}"
    try:
        tmp.mkdir()
        _write_contents(tmp, models, state, config, ema)
        if final.exists():  # re-saving a step (e.g. interrupt right after a periodic save)
            shutil.rmtree(final)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _point_latest(ckpt_root, final.name)
    if keep_last > 0:
        prune(ckpt_root, keep_last)
    return final


def _write_contents(folder: Path, models: Mapping[str, torch.Tensor], state: dict[str, Any],
                    config: DictConfig, ema: Mapping[str, torch.Tensor] | None) -> None:
    save_file(_contiguous(models), str(folder / "models.safetensors"))
    if ema is not None:
        save_file(_contiguous(ema), str(folder / "ema.safetensors"))
    torch.save(state, folder / "state.pt")
    (folder / "config.yaml").write_text(OmegaConf.to_yaml(config, resolve=True), encoding="utf-8")
    _fsync_dir(folder)


def _contiguous(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}


def _fsync_dir(folder: Path) -> None:
    for f in folder.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())


def _point_latest(ckpt_root: Path, name: str) -> None:
    tmp_link = ckpt_root / f".{LATEST}.tmp-{os.getpid()}"
    tmp_link.unlink(missing_ok=True)
    os.symlink(name, tmp_link)  # relative, so the folder can be moved
    os.replace(tmp_link, ckpt_root / LATEST)


def _remove_stale_temps(ckpt_root: Path) -> None:
    for p in ckpt_root.glob(".tmp-*"):
        shutil.rmtree(p, ignore_errors=True)


def list_checkpoints(ckpt_root: Path) -> list[Path]:
    """Whole checkpoints in step order (temporary folders excluded)."""
    found = [p for p in ckpt_root.iterdir() if p.is_dir() and _STEP_RE.match(p.name)] if ckpt_root.is_dir() else []
    return sorted(found, key=lambda p: int(_STEP_RE.match(p.name).group(1)))


def prune(ckpt_root: Path, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` checkpoints (never the one ``latest`` names)."""
    latest = (ckpt_root / LATEST).resolve()
    for old in list_checkpoints(ckpt_root)[:-keep_last]:
        if old.resolve() != latest:
            shutil.rmtree(old, ignore_errors=True)


def resolve(path: str | Path) -> Path:
    """The checkpoint folder meant by ``path``: a step folder, a ``ckpt`` folder, its ``latest``
    link, or a run's output folder (which holds ``ckpt/``)."""
    p = Path(path).expanduser()
    for candidate in (p, p / LATEST, p / "ckpt" / LATEST):
        if candidate.is_dir() and all((candidate / f).is_file() for f in FILES):
            return candidate.resolve()
    if not p.exists():
        raise CheckpointError(f"checkpoint not found: {p} does not exist; check trainer.ckpt_dir")
    raise CheckpointError(
        f"no complete checkpoint at {p}: expected a step_* folder holding {', '.join(FILES)}, "
        f"or a folder with {LATEST} or ckpt/{LATEST}; point trainer.ckpt_dir at one"
    )


def load(folder: Path) -> dict[str, Any]:
    """Everything a checkpoint holds: ``models``, ``ema`` (or None), ``state``, ``config``."""
    try:
        ema_path = folder / "ema.safetensors"
        return {
            "models": load_file(str(folder / "models.safetensors")),
            "ema": load_file(str(ema_path)) if ema_path.is_file() else None,
            "state": torch.load(folder / "state.pt", map_location="cpu", weights_only=False),
            "config": OmegaConf.load(folder / "config.yaml"),
        }
    except (OSError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {folder} cannot be read ({exc}); resume from an earlier one") from exc
