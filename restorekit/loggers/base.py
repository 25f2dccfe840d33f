"""The logger contract and the fan-out used by trainers."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


class Logger(ABC):
    """Receives namespaced scalars (``loss/mel_l1``), audio and images at a step.

    Contract: ``log_scalars(scalars, step)`` with floats; ``log_audio(key, wave, sr, step)``
    with float32 mono ``(time,)`` in [-1, 1]; ``log_image(key, image, step)`` with uint8
    ``(height, width, 3)``. Loggers that cannot show audio or images ignore them.
    ``close()`` releases everything (files, background processes) and is idempotent.
    """

    @abstractmethod
    def log_scalars(self, scalars: Mapping[str, float], step: int) -> None: ...

    def log_audio(self, key: str, wave: np.ndarray, sr: int, step: int) -> None:
        """Ignored unless the logger can store audio."""

    def log_image(self, key: str, image: np.ndarray, step: int) -> None:
        """Ignored unless the logger can store images."""

    def log_config(self, config: Mapping[str, Any]) -> None:
        """Ignored unless the logger stores run configs."""

    def close(self) -> None:
        """Nothing to release by default."""

    def __enter__(self) -> Logger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MultiLogger(Logger):
    """Sends everything to several loggers (the console plus the configured one)."""

    def __init__(self, loggers: list[Logger]) -> None:
        self.loggers = loggers

    def log_scalars(self, scalars: Mapping[str, float], step: int) -> None:
        for lg in self.loggers:
            lg.log_scalars(scalars, step)

    def log_audio(self, key: str, wave: np.ndarray, sr: int, step: int) -> None:
        for lg in self.loggers:
            lg.log_audio(key, wave, sr, step)

    def log_image(self, key: str, image: np.ndarray, step: int) -> None:
        for lg in self.loggers:
            lg.log_image(key, image, step)

    def log_config(self, config: Mapping[str, Any]) -> None:
        for lg in self.loggers:
            lg.log_config(config)

    def close(self) -> None:
        for lg in self.loggers:
            lg.close()


def build_loggers(node: Any, output_dir: str | Path, where: str = "exp.logger") -> MultiLogger:
    """The console logger plus the one ``node`` selects (a name or a ``{name, args}`` node).

    ``output_dir`` is injected into loggers that accept it (wandb writes its run folder there).
    """
    from restorekit.loggers import LOGGERS

    loggers: list[Logger] = []
    if node is None or node == "console" or (isinstance(node, Mapping) and node.get("name") == "console"):
        loggers.append(LOGGERS.build(node or "console", where))
        return MultiLogger(loggers)
    loggers.append(LOGGERS.build("console", where))
    name = node if isinstance(node, str) else node.get("name")
    params = [p.name for p in LOGGERS.entry(str(name), where).params()]
    injected = {"output_dir": str(output_dir)} if "output_dir" in params else {}
    loggers.append(LOGGERS.build(node, where, **injected))
    return MultiLogger(loggers)
