"""The metric suite: score many files with a list of metrics, serially or in worker processes.

Each worker process builds the metrics once (models load once per process, not per file) and
scores whole files. BLAS, torch and ONNX Runtime run single-threaded in both modes, so the
parallel values are identical to the serial ones. A metric that cannot score a file records a
failure with its reason; nothing is imputed. Results go to a per-file CSV, a failures CSV and a
summary (JSON and Markdown) with mean, standard deviation and a t-distribution 95% CI.
"""
from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import multiprocessing
import sys
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from restorekit.audio import load
from restorekit.config import atomic_write_text, to_plain
from restorekit.errors import AudioError, ConfigError
from restorekit.metrics import METRICS
from restorekit.metrics.base import Metric, MetricFailure

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """One file to score: ``system`` made ``estimate``; ``reference``/``transcript`` when paired."""

    system: str
    name: str
    estimate: str
    reference: str | None = None
    transcript: str | None = None
    failure: str | None = None  # why no estimate exists (e.g. the enhancer failed on this file)


@dataclass
class FileResult:
    """The values one file got, and for each metric that failed on it, the reason."""

    job: Job
    values: dict[str, float] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


def metric_nodes(nodes: Any, where: str = "metrics") -> list[dict[str, Any]]:
    """The metric list of a config as plain ``{name, args}`` dicts (a bare name is allowed)."""
    nodes = to_plain(nodes)
    if not isinstance(nodes, list) or not nodes:
        raise ConfigError(f"{where} must be a non-empty list of metric nodes, e.g. [{{name: pesq_wb}}, {{name: dnsmos}}]")
    out = [{"name": n} if isinstance(n, str) else dict(n) for n in nodes]
    for i, node in enumerate(out):
        METRICS.get(str(node.get("name")), f"{where}.{i}")  # unknown names fail before any work
    return out


def metric_label(node: dict[str, Any], index: int, nodes: Sequence[dict[str, Any]]) -> str:
    """A metric's label in results: its name, or ``name_<index>`` when listed more than once."""
    same = [n for n in nodes if n["name"] == node["name"]]
    return node["name"] if len(same) == 1 else f"{node['name']}_{index}"


class Scorer:
    """The built metrics of a suite, scoring one file at a time in this process."""

    def __init__(self, nodes: Sequence[dict[str, Any]]) -> None:
        self.metrics: list[tuple[str, Metric]] = [
            (metric_label(n, i, nodes), METRICS.build(n, where=f"metrics.{i}")) for i, n in enumerate(nodes)
        ]

    def __call__(self, job: Job) -> FileResult:
        result = FileResult(job)
        if job.failure:
            result.failures = {label: job.failure for label, _ in self.metrics}
            return result
        try:
            est, sr = load(job.estimate)
            ref = load(job.reference, sr=sr)[0] if job.reference else None
        except AudioError as exc:
            result.failures = {label: f"unreadable audio: {exc}" for label, _ in self.metrics}
            return result
        for label, metric in self.metrics:
            self._score_one(result, label, metric, est, sr, ref)
        return result

    @staticmethod
    def _score_one(result: FileResult, label: str, metric: Metric, est, sr: int, ref) -> None:
        try:
            if metric.needs_reference and ref is None:
                raise MetricFailure("needs a reference and this file has none paired with it")
            kwargs = {"transcript": result.job.transcript} if getattr(metric, "needs_transcript", False) else {}
            result.values.update(metric(est, sr, ref, **kwargs))
        except MetricFailure as exc:
            result.failures[label] = exc.reason
        except Exception as exc:  # a library crash on one file must not end a long evaluation
            log.warning("metric %s crashed on %s", label, result.job.estimate, exc_info=True)
            result.failures[label] = f"unexpected {type(exc).__name__}: {exc}"


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch on ``n`` threads while scoring (restored after), when a metric has loaded torch.

    torch is not imported here: most metrics never need it, and importing it costs every
    worker seconds of start-up.
    """
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch is not None:
            torch.set_num_threads(before)


def _serial(nodes: list[dict[str, Any]], jobs: list[Job]) -> list[FileResult]:
    from threadpoolctl import threadpool_limits

    # Single-threaded BLAS/torch as in the workers, so both modes give identical values.
    with threadpool_limits(limits=1):
        scorer = Scorer(nodes)
        with torch_threads(1):
            return [scorer(j) for j in jobs]


# Per-process state of a worker: the metrics built once by the initializer. Only ever set
# inside pool worker processes, never in the parent.
_WORKER_SCORER: Scorer | None = None


def _init_worker(nodes: list[dict[str, Any]]) -> None:
    from threadpoolctl import threadpool_limits

    global _WORKER_SCORER
    threadpool_limits(limits=1)
    _WORKER_SCORER = Scorer(nodes)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def _score_in_worker(job: Job) -> FileResult:
    assert _WORKER_SCORER is not None, "worker used before its initializer ran"
    return _WORKER_SCORER(job)


class MetricSuite:
    """Scores jobs with the metric ``nodes``: in this process (workers=1) or in ``workers`` processes."""

    def __init__(self, nodes: Any, workers: int = 1) -> None:
        self.nodes = metric_nodes(nodes)
        if int(workers) < 1:
            raise ConfigError(f"suite workers must be >= 1, got {workers}")
        self.workers = int(workers)

    def keys(self) -> list[str]:
        """Every value column the suite can produce, in metric order."""
        return [k for n in self.nodes for k in METRICS.get(n["name"]).keys]

    def lower_is_better(self) -> set[str]:
        return {k for n in self.nodes for k in METRICS.get(n["name"]).lower_is_better}

    def run(self, jobs: Iterable[Job]) -> list[FileResult]:
        """Results in the order of ``jobs``."""
        jobs = list(jobs)
        if self.workers == 1 or len(jobs) <= 1:
            return _serial(self.nodes, jobs)
        # spawn: torch/ONNX Runtime thread pools in a forked child can deadlock.
        ctx = multiprocessing.get_context("spawn")
        workers = min(self.workers, len(jobs))
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(self.nodes,)) as pool:
            return list(pool.map(_score_in_worker, jobs))


def describe(values: Sequence[float], failed: int) -> dict[str, Any]:
    """Mean, sample std and the t-distribution 95% CI of the mean (None where undefined)."""
    from scipy import stats

    n = len(values)
    mean = float(np.mean(values)) if n else None
    std = float(np.std(values, ddof=1)) if n > 1 else None
    half = float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n)) if n > 1 else None
    ci = [mean - half, mean + half] if half is not None else None
    return {"mean": mean, "std": std, "ci95": ci, "ci95_half": half, "n": n, "failed": failed}


def summarize(results: Sequence[FileResult], keys: Sequence[str], labels: dict[str, str]) -> dict[str, Any]:
    """Per system and value key: statistics over the files that scored; failures counted."""
    systems: dict[str, Any] = {}
    for system in dict.fromkeys(r.job.system for r in results):
        mine = [r for r in results if r.job.system == system]
        stats_ = {k: describe([r.values[k] for r in mine if k in r.values],
                              sum(labels[k] in r.failures for r in mine)) for k in keys}
        systems[system] = {"files": len(mine), "metrics": stats_}
    failures = [
        {"system": r.job.system, "name": r.job.name, "metric": m, "reason": why}
        for r in results for m, why in r.failures.items()
    ]
    return {"systems": systems, "failures": {"count": len(failures), "items": failures}}


def key_labels(nodes: Sequence[dict[str, Any]]) -> dict[str, str]:
    """Value key -> the metric label whose failure leaves it empty."""
    return {k: metric_label(n, i, nodes) for i, n in enumerate(nodes) for k in METRICS.get(n["name"]).keys}


def write_results(results: Sequence[FileResult], keys: Sequence[str], out_dir: Path) -> dict[str, Path]:
    """per_file.csv (values; empty cell where a metric failed) and failures.csv."""
    out_dir.mkdir(parents=True, exist_ok=True)
    per_file, failures = out_dir / "per_file.csv", out_dir / "failures.csv"
    with per_file.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["system", "name", "estimate", "reference", *keys, "failed_metrics"])
        for r in results:
            vals = [repr(r.values[k]) if k in r.values else "" for k in keys]
            w.writerow([r.job.system, r.job.name, r.job.estimate, r.job.reference or "", *vals, ";".join(r.failures)])
    with failures.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["system", "name", "metric", "reason"])
        for r in results:
            w.writerows([r.job.system, r.job.name, m, why] for m, why in r.failures.items())
    return {"per_file": per_file, "failures": failures}


def write_summary(summary: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """summary.json and summary.md."""
    out_dir.mkdir(parents=True, exist_ok=True)
    js = atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2))
    md = atomic_write_text(out_dir / "summary.md", summary_markdown(summary))
    return {"summary_json": js, "summary_md": md}


SMALL_N = 5  # fewer files than this per system: the interval is too wide to compare systems by


def small_samples(summary: dict[str, Any], keys: list[str] | None = None) -> list[str]:
    """``"system: metric (n=2)"`` for every mean computed from fewer than SMALL_N files."""
    return [f"{system}: {k} (n={st['n']})" for system, v in summary["systems"].items()
            for k, st in v["metrics"].items() if (keys is None or k in keys) and 0 < st["n"] < SMALL_N]


def summary_markdown(summary: dict[str, Any]) -> str:
    """A table: one row per system, one column per value (mean ± 95% CI half-width, n)."""
    systems = summary["systems"]
    keys = list(next(iter(systems.values()))["metrics"]) if systems else []
    lines = ["| system | files | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for name, s in systems.items():
        cells = [format_stat(s["metrics"][k]) for k in keys]
        lines.append(f"| {name} | {s['files']} | " + " | ".join(cells) + " |")
    lines += ["", f"Failures: {summary['failures']['count']} (see failures.csv); "
              "values are mean ± 95% CI half-width (t-distribution), n = files scored."]
    few = small_samples(summary)
    if few:
        lines.append(f"Warning: fewer than {SMALL_N} files scored for {', '.join(few)}; "
                     "those intervals are wide and differences there are not reliable.")
    return "\n".join(lines) + "\n"


def format_stat(stat: dict[str, Any]) -> str:
    if stat["mean"] is None:
        return f"— (n=0, {stat['failed']} failed)"
    half = f" ± {stat['ci95_half']:.3f}" if stat["ci95_half"] is not None else ""
    failed = f", {stat['failed']} failed" if stat["failed"] else ""
    return f"{stat['mean']:.3f}{half} (n={stat['n']}{failed})"
