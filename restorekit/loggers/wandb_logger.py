"""Weights & Biases logger: online with an API key, offline without one."""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from restorekit.errors import ConfigError
from restorekit.loggers import LOGGERS
from restorekit.loggers.base import Logger

_MODES = ("online", "offline", "disabled")


def resolve_mode(mode: str | None) -> str:
    """Explicit mode, else $WANDB_MODE, else online with $WANDB_API_KEY, else offline."""
    chosen = mode or os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
    if chosen == "dryrun":  # wandb's old spelling of offline
        chosen = "offline"
    if chosen not in _MODES:
        raise ConfigError(f"exp.logger.args.mode: '{chosen}' is not a wandb mode; use one of {', '.join(_MODES)}")
    return chosen


@LOGGERS.register("wandb")
class WandbLogger(Logger):
    """Weights & Biases run in `output_dir/wandb`; offline unless WANDB_API_KEY is set."""

    requires = ("wandb",)

    def __init__(
        self,
        output_dir: str = ".",
        project: str = "restorekit",
        entity: str | None = None,
        name: str | None = None,
        tags: list[str] | None = None,
        mode: str | None = None,
    ) -> None:
        import wandb

        self._wandb = wandb
        self.mode = resolve_mode(mode)
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=project, entity=entity, name=name, tags=tags, dir=str(output_dir), mode=self.mode,
            reinit="finish_previous",
        )
        self._closed = False

    @property
    def run_dir(self) -> Path | None:
        """The local run folder (``.../wandb/offline-run-*``), None when disabled."""
        return None if self.mode == "disabled" else Path(self.run.dir).parent

    def log_scalars(self, scalars: Mapping[str, float], step: int) -> None:
        self.run.log({k: float(v) for k, v in scalars.items()}, step=step)

    def log_audio(self, key: str, wave: np.ndarray, sr: int, step: int) -> None:
        self.run.log({key: self._wandb.Audio(np.asarray(wave, dtype=np.float32), sample_rate=sr)}, step=step)

    def log_image(self, key: str, image: np.ndarray, step: int) -> None:
        self.run.log({key: self._wandb.Image(image)}, step=step)

    def log_config(self, config: Mapping[str, Any]) -> None:
        self.run.config.update(dict(config), allow_val_change=True)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.run.finish()
        # finish() leaves wandb's background service running until interpreter exit;
        # teardown stops it now so no process outlives the training run.
        self._wandb.teardown()
