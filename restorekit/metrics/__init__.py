"""Metrics: intrusive (paired) and non-intrusive scores of audio, whoever made it.

Importing this package registers every component in it. Heavy libraries (pesq, onnxruntime,
resemblyzer, pocketsphinx) are imported when a metric is built, not here.
"""
from restorekit.registry import Registry

METRICS = Registry("metrics")

from restorekit.metrics import asr, intrusive, mos, nonintrusive, speaker  # noqa: E402,F401  (registers)
from restorekit.metrics.base import Metric, MetricFailure  # noqa: E402

__all__ = ["METRICS", "Metric", "MetricFailure"]
