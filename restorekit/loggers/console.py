"""Console logger: one line of scalars per logging step."""
from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TextIO

from restorekit.loggers import LOGGERS
from restorekit.loggers.base import Logger


@LOGGERS.register("console")
class ConsoleLogger(Logger):
    """Prints scalars as `step N | key value | ...` (4 significant digits) to stdout."""

    def __init__(self, precision: int = 4, stream: TextIO | None = None) -> None:
        self.precision = precision
        self.stream = stream

    def format(self, scalars: Mapping[str, float], step: int) -> str:
        parts = [f"{k} {float(v):.{self.precision}g}" for k, v in sorted(scalars.items())]
        return " | ".join([f"step {step}", *parts])

    def log_scalars(self, scalars: Mapping[str, float], step: int) -> None:
        print(self.format(scalars, step), file=self.stream or sys.stdout, flush=True)
