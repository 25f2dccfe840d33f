"""Metric-suite throughput, serial versus parallel worker processes, with identical values.

    python benchmarks/metrics.py [--workers 2] [--repeat 2] [--metrics pesq_wb,stoi,si_sdr,dnsmos]

Scores the real pairs in ../shared/data/real/pairs (noisy against clean; synthetic pairs when
that folder is absent) ``repeat`` times over, once in this process and once in ``workers``
processes, and prints JSON: files/s for each, the speed-up, and whether every value agrees
exactly. Both timings include building the metrics (and, in parallel, starting the workers),
as a user's run does; serial and parallel runs alternate and the best of each is reported,
with the CPU share each got, because other jobs share the machine. Target: >= 1.7x on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from restorekit.audio import save
from restorekit.metrics.suite import Job, MetricSuite

REAL = Path(os.environ.get("RESTOREKIT_REAL_DATA", Path(__file__).resolve().parents[2] / "shared" / "data" / "real"))


def real_jobs() -> list[Job]:
    noisy = sorted((REAL / "pairs" / "noisy").glob("*.*"))
    return [Job("noisy", p.stem, str(p), str(next((REAL / "pairs" / "clean").glob(f"{p.stem}.*")))) for p in noisy]


def synthetic_jobs(folder: Path, n: int = 16, sr: int = 16000) -> list[Job]:
    rng = np.random.default_rng(0)
    jobs = []
    for i in range(n):
        t = np.arange(3 * sr) / sr
        clean = (0.3 * np.sin(2 * np.pi * 150 * t) * np.clip(np.sin(2 * np.pi * 3 * t), 0, None)).astype(np.float32)
        deg = np.clip(clean + rng.normal(0, 0.05, t.size), -1, 1).astype(np.float32)
        c, d = save(folder / f"c{i}.wav", clean, sr), save(folder / f"d{i}.wav", deg, sr)
        jobs.append(Job("synthetic", f"f{i}", str(d), str(c)))
    return jobs


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the pool's workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed(suite: MetricSuite, jobs: list[Job]) -> tuple[float, float, list]:
    """Wall seconds, CPU seconds and the values of one suite run."""
    start, cpu = time.perf_counter(), cpu_seconds()
    results = suite.run(jobs)
    wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    return wall, cpu, [(r.values, r.failures) for r in results]


def measure(nodes: list[dict], jobs: list[Job], workers: int, rounds: int) -> dict:
    """Serial and parallel runs alternated ``rounds`` times (others share this machine, so
    the best round of each is the one least disturbed); every run must give the same values."""
    runs: dict[str, list] = {"serial": [], "parallel": []}
    values = []
    for _ in range(rounds):
        for mode, n in (("serial", 1), ("parallel", workers)):
            wall, cpu, vals = timed(MetricSuite(nodes, workers=n), jobs)
            runs[mode].append((wall, cpu))
            values.append(vals)
    best = {m: min(r) for m, r in runs.items()}
    return {
        "serial_s": round(best["serial"][0], 2),
        "parallel_s": round(best["parallel"][0], 2),
        "serial_files_per_s": round(len(jobs) / best["serial"][0], 3),
        "parallel_files_per_s": round(len(jobs) / best["parallel"][0], 3),
        "speedup": round(best["serial"][0] / best["parallel"][0], 2),
        # CPU seconds per wall second: the cores each best run actually got on a shared machine
        "serial_cores_used": round(best["serial"][1] / best["serial"][0], 2),
        "parallel_cores_used": round(best["parallel"][1] / best["parallel"][0], 2),
        "all_runs_s": {m: [round(w, 2) for w, _ in r] for m, r in runs.items()},
        "identical_values": all(v == values[0] for v in values),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1, help="score the file set this many times over")
    parser.add_argument("--rounds", type=int, default=2, help="alternating serial/parallel measurements")
    parser.add_argument("--metrics", default="pesq_wb,stoi,si_sdr,dnsmos")
    a = parser.parse_args()
    nodes = [{"name": n} for n in a.metrics.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        real = (REAL / "pairs").is_dir()
        jobs = (real_jobs() if real else synthetic_jobs(Path(tmp))) * a.repeat
        result = measure(nodes, jobs, a.workers, a.rounds)
    print(json.dumps({
        "data": "real pairs" if real else "synthetic",
        "files": len(jobs),
        "metrics": [n["name"] for n in nodes],
        "workers": a.workers,
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        **result,
    }, indent=2))


if __name__ == "__main__":
    main()
