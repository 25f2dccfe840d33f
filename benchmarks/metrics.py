"""Metric-suite throughput, serial versus parallel worker processes, with identical values.

    python benchmarks/metrics.py [--workers 2] [--repeat 2] [--metrics pesq_wb,stoi,si_sdr,dnsmos]

Scores the real pairs in ../shared/data/real/pairs (noisy against clean; synthetic pairs when
that folder is absent) ``repeat`` times over, once in this process and once in ``workers``
processes, and prints JSON: files/s for each, the speed-up, and whether every value agrees
exactly. Both timings include building the metrics (and, in parallel, starting the workers),
as a user's run does: each run is a fresh interpreter. Serial and parallel runs alternate and
the best of each is reported with the CPU share it got, because other jobs share the machine. Target: >= 1.7x on 2 cores.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
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


def one_run(nodes: list[dict], jobs: list[Job], workers: int) -> dict:
    """One suite run in this (fresh) process: wall s, CPU s, and a digest of every value."""
    wall, cpu, values = timed(MetricSuite(nodes, workers=workers), jobs)
    digest = hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()  # exact floats
    return {"wall": wall, "cpu": cpu, "digest": digest}


def fresh_run(args: argparse.Namespace, workers: int) -> dict:
    """``one_run`` in a new interpreter, so serial and parallel both start cold, as a CLI run does."""
    cmd = [sys.executable, __file__, "--child", str(workers), "--repeat", str(args.repeat), "--metrics", args.metrics]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def measure(args: argparse.Namespace) -> dict:
    """Serial and parallel runs alternated ``rounds`` times (others share this machine, so
    the best round of each is the one least disturbed); every run must give the same values."""
    runs: dict[str, list[dict]] = {"serial": [], "parallel": []}
    for _ in range(args.rounds):
        runs["serial"].append(fresh_run(args, 1))
        runs["parallel"].append(fresh_run(args, args.workers))
    best = {m: min(r, key=lambda x: x["wall"]) for m, r in runs.items()}
    files = args.files
    return {
        "serial_s": round(best["serial"]["wall"], 2),
        "parallel_s": round(best["parallel"]["wall"], 2),
        "serial_files_per_s": round(files / best["serial"]["wall"], 3),
        "parallel_files_per_s": round(files / best["parallel"]["wall"], 3),
        "speedup": round(best["serial"]["wall"] / best["parallel"]["wall"], 2),
        # CPU seconds per wall second: the cores each best run actually got on a shared machine
        "serial_cores_used": round(best["serial"]["cpu"] / best["serial"]["wall"], 2),
        "parallel_cores_used": round(best["parallel"]["cpu"] / best["parallel"]["wall"], 2),
        # what the speed-up would be with both cores free: serial CPU over parallel CPU per core
        "cpu_bound_speedup_estimate": round(best["serial"]["cpu"] / (best["parallel"]["cpu"] / args.workers), 2),
        "all_runs_s": {m: [round(x["wall"], 2) for x in r] for m, r in runs.items()},
        "identical_values": len({x["digest"] for r in runs.values() for x in r}) == 1,
    }


def build_jobs(repeat: int, tmp: Path) -> tuple[list[Job], bool]:
    real = (REAL / "pairs").is_dir()
    return (real_jobs() if real else synthetic_jobs(tmp)) * repeat, real


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1, help="score the file set this many times over")
    parser.add_argument("--rounds", type=int, default=2, help="alternating serial/parallel measurements")
    parser.add_argument("--metrics", default="pesq_wb,stoi,si_sdr,dnsmos")
    parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)  # internal: one run
    a = parser.parse_args()
    nodes = [{"name": n} for n in a.metrics.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        jobs, real = build_jobs(a.repeat, Path(tmp))
        if a.child:
            print(json.dumps(one_run(nodes, jobs, a.child)))
            return
        a.files = len(jobs)
        result = measure(a)
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
