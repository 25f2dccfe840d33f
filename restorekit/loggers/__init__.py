"""Loggers: the console (always on), plus Weights & Biases or TensorBoard, selected by ``exp.logger``.

Importing this package registers every logger in it.
"""
from restorekit.registry import Registry

LOGGERS = Registry("loggers")

from restorekit.loggers import console, tensorboard_logger, wandb_logger  # noqa: E402,F401  (registers)
from restorekit.loggers.base import Logger, MultiLogger, build_loggers  # noqa: E402

__all__ = ["LOGGERS", "Logger", "MultiLogger", "build_loggers"]
