"""TensorBoard logger: event files in ``output_dir/tensorboard`` (``tensorboard --logdir RUN``)."""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from restorekit.loggers import LOGGERS
from restorekit.loggers.base import Logger


@LOGGERS.register("tensorboard")
class TensorBoardLogger(Logger):
    """TensorBoard event files in `output_dir/<subdir>`: scalars, audio, images and the run config.

    Written with torch.utils.tensorboard (needs the ``tensorboard`` package:
    ``pip install 'restorekit[tensorboard]'``). ``flush_secs``: how often events reach the disk.
    """

    requires = ("tensorboard",)

    def __init__(self, output_dir: str = ".", subdir: str = "tensorboard", flush_secs: int = 30) -> None:
        from torch.utils.tensorboard import SummaryWriter  # `requires` made Registry.build check it

        self.log_dir = Path(output_dir) / subdir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(log_dir=str(self.log_dir), flush_secs=int(flush_secs))
        self._closed = False

    def log_scalars(self, scalars: Mapping[str, float], step: int) -> None:
        for key, value in scalars.items():
            self.writer.add_scalar(key, float(value), global_step=step)

    def log_audio(self, key: str, wave: np.ndarray, sr: int, step: int) -> None:
        data = np.clip(np.asarray(wave, dtype=np.float32).reshape(1, -1), -1.0, 1.0)
        self.writer.add_audio(key, data, global_step=step, sample_rate=int(sr))

    def log_image(self, key: str, image: np.ndarray, step: int) -> None:
        self.writer.add_image(key, np.asarray(image, dtype=np.uint8), global_step=step, dataformats="HWC")

    def log_config(self, config: Mapping[str, Any]) -> None:
        text = json.dumps(dict(config), indent=2, default=str)
        self.writer.add_text("config", f"```\n{text}\n```", global_step=0)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.writer.close()
