"""Miipher-2 restoration speed and memory on this CPU; prints JSON.

For each model config and duration, a fresh worker process builds the restorer (random init,
offline), restores synthetic 16 kHz audio and reports the real-time factor (processing seconds /
audio seconds) and its peak resident memory. Separate processes because peak RSS only grows.

    python benchmarks/inference.py                       # quickstart + full-size w2v-BERT, 10/60/300 s
    python benchmarks/inference.py --configs miipher2_gemma3n_audio --durations 10
    python benchmarks/inference.py --configs quickstart --durations 10 60 --threads 1
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {
    "quickstart": ("configs/quickstart/models.yaml", []),
    "miipher2_w2v_bert2": ("configs/miipher2/models_w2v_bert2.yaml",
                           ["models.feature_cleaner.args.encoder.args.pretrained=null"]),
    "miipher2_gemma3n_audio": ("configs/miipher2/models_gemma3n_audio.yaml",
                               ["models.feature_cleaner.args.encoder.args.pretrained=null"]),
}
DEFAULT_CONFIGS = ["quickstart", "miipher2_w2v_bert2"]  # the Gemma 3n variant on request


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def worker(config: str, seconds: float, threads: int, chunk_seconds: float) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    from restorekit.config import apply_overrides, load_yaml
    from restorekit.models.miipher2 import Miipher2

    path, overrides = CONFIGS[config]
    cfg = apply_overrides(load_yaml(REPO / path), overrides)
    restorer = Miipher2(cfg.models.feature_cleaner, cfg.models.vocoder, chunk_seconds=chunk_seconds)
    built_rss = peak_rss_mb()
    sr = 16000
    t = np.arange(int(seconds * sr)) / sr
    wave = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
            + 0.03 * np.random.default_rng(0).standard_normal(len(t))).astype(np.float32)
    start = time.perf_counter()
    out, rate = restorer.restore(wave, sr)
    elapsed = time.perf_counter() - start
    assert out.shape[0] == round(len(wave) * rate / sr), "restored length does not match the input"
    return {"config": config, "audio_seconds": seconds, "threads": threads, "chunk_seconds": chunk_seconds,
            "seconds": round(elapsed, 2), "rtf": round(elapsed / seconds, 4),
            "rss_after_build_mb": round(built_rss, 1), "peak_rss_mb": round(peak_rss_mb(), 1),
            "parameters": sum(p.numel() for p in restorer.parameters())}


def run_worker(config: str, seconds: float, threads: int, chunk: float) -> dict:
    cmd = [sys.executable, __file__, "--worker", config, str(seconds), str(threads), str(chunk)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    if proc.returncode != 0:
        return {"config": config, "audio_seconds": seconds, "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS, choices=list(CONFIGS))
    parser.add_argument("--durations", nargs="+", type=float, default=[10.0, 60.0, 300.0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--chunk-seconds", type=float, default=10.0)
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        c, s, t, ch = args.worker
        print(json.dumps(worker(c, float(s), int(t), float(ch))))
        return
    results = [run_worker(c, d, args.threads, args.chunk_seconds) for c in args.configs for d in args.durations]
    summary = {}
    for c in args.configs:
        rss = {r["audio_seconds"]: r.get("peak_rss_mb") for r in results if r["config"] == c}
        if rss.get(60.0) and rss.get(300.0):
            summary[c] = {"peak_rss_300s_over_60s": round(rss[300.0] / rss[60.0], 3)}
    print(json.dumps({"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                                  "threads": args.threads}, "results": results, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
