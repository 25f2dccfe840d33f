"""Miipher-2 restoration speed and memory on this CPU; prints JSON.

For each model config and duration, a fresh worker process builds the restorer (random init,
offline), restores synthetic 16 kHz audio and reports the real-time factor (processing seconds /
audio seconds) and its peak resident memory. Separate processes because peak RSS only grows.

    python benchmarks/inference.py                       # quickstart + full-size w2v-BERT, 10/60/300 s
    python benchmarks/inference.py --configs miipher2_gemma3n_audio --durations 10
    python benchmarks/inference.py --configs quickstart --durations 10 60 --threads 1

``--batched`` instead compares, side by side in one run, per config: files/s and x real time of
``restore`` one file at a time (batch 1) and of ``restore_batch`` (``--batch-size``, 8) on the same
``--files`` synthetic files of mixed lengths around ``--seconds``, the max abs difference between
the two, and with ``--before REV`` the same batch-1 restoration by the code at git revision REV (a
temporary worktree; the model is built from the same seed, so weights are equal) with its RTF and
the max abs difference from it (equal output):

    python benchmarks/inference.py --batched --before 8ad7dfc --files 8 --seconds 1 --threads 1

``--compile`` adds, for this tree, batch 1 with ``compile=True`` (WaveFit through torch.compile): a
second restorer from the same seed, whose first call (a 0.25 s clip, not one of the files) compiles;
that call's time is ``compile_seconds``, and the files are then timed as for the other modes, with the
max abs difference from eager batch 1 and (with ``--before``) the speed-up over the old code.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
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


def _files(n: int, seconds: float, sr: int = 16000) -> list:
    """``n`` speech-like test signals, lengths spread over 0.6-1.4 x ``seconds`` (mixed, as a corpus is)."""
    import numpy as np

    rng = np.random.default_rng(0)
    waves = []
    for i in range(n):
        t = np.arange(int(seconds * sr * (0.6 + 0.8 * i / max(n - 1, 1)))) / sr
        waves.append((0.3 * np.sin(2 * np.pi * (150 + 20 * i) * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
                      + 0.03 * rng.standard_normal(len(t))).astype(np.float32))
    return waves


def batched_worker(config: str, files: int, seconds: float, threads: int, batch_size: int, out: str,
                   compile_too: bool = False) -> dict:
    """Batch 1 vs ``batch_size`` with the restorekit found on PYTHONPATH; batch-1 outputs saved to ``out``."""
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    import restorekit
    from restorekit.config import apply_overrides, load_yaml
    from restorekit.models.miipher2 import Miipher2

    path, overrides = CONFIGS[config]
    cfg = apply_overrides(load_yaml(REPO / path), overrides)
    torch.manual_seed(0)
    restorer = Miipher2(cfg.models.feature_cleaner, cfg.models.vocoder)
    waves, sr = _files(files, seconds), 16000
    audio = sum(len(w) for w in waves) / sr
    report = {"config": config, "code": str(Path(restorekit.__file__).parents[1]), "files": files,
              "audio_seconds": round(audio, 2), "threads": threads}
    modes = {"batch_1": lambda: [restorer.restore(w, sr) for w in waves]}
    if hasattr(restorer, "restore_batch"):
        modes[f"batch_{batch_size}"] = lambda: restorer.restore_batch(waves, sr, batch_size=batch_size)
    restorer.restore(waves[0][: sr // 4], sr)  # warm-up (oneDNN primitives), not timed
    outputs = {}
    for name, restore in modes.items():
        wall, cpu = time.perf_counter(), time.process_time()
        outputs[name] = [y for y, _ in restore()]
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        report[name] = {"seconds": round(wall, 2), "cpu_seconds": round(cpu, 2), "files_per_s": round(files / wall, 4),
                        "x_real_time": round(audio / wall, 4), "rtf": round(wall / audio, 4)}
    if len(outputs) > 1:
        report["max_abs_diff_batched_vs_single"] = float(max(
            np.abs(a - b).max() for a, b in zip(outputs["batch_1"], outputs[f"batch_{batch_size}"])))
    if compile_too:
        torch.manual_seed(0)
        compiled = Miipher2(cfg.models.feature_cleaner, cfg.models.vocoder, compile=True)
        wall = time.perf_counter()
        compiled.restore(waves[0][: sr // 4], sr)  # compiles (dynamic shapes: once for every length)
        report["compile_seconds"] = round(time.perf_counter() - wall, 2)
        wall, cpu = time.perf_counter(), time.process_time()
        ys = [compiled.restore(w, sr)[0] for w in waves]
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        report["batch_1_compiled"] = {"seconds": round(wall, 2), "cpu_seconds": round(cpu, 2),
                                      "files_per_s": round(files / wall, 4), "x_real_time": round(audio / wall, 4),
                                      "rtf": round(wall / audio, 4)}
        report["max_abs_diff_compiled_vs_single"] = float(max(
            np.abs(a - b).max() for a, b in zip(outputs["batch_1"], ys)))
    np.savez(out, *outputs["batch_1"])
    report["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return report


def run_batched(configs: list[str], files: int, seconds: float, threads: int, batch_size: int,
                before: str | None, compile_too: bool = False) -> dict:
    """Per config: this tree's batch 1 vs batch N, and (``before``) the code at that revision's batch 1."""
    import numpy as np

    results = []
    with tempfile.TemporaryDirectory(prefix="rk_bench_batched_") as tmp:
        trees = {"after": REPO}
        if before:
            trees["before"] = Path(tmp) / "before"
            subprocess.run(["git", "worktree", "add", "--detach", str(trees["before"]), before], cwd=REPO,
                           check=True, capture_output=True)
        try:
            for config in configs:
                row = {}
                for name, tree in trees.items():
                    out = f"{tmp}/{config}_{name}.npz"
                    cmd = [sys.executable, __file__, "--batched-worker", config, str(files), str(seconds),
                           str(threads), str(batch_size), out, str(int(compile_too and name == "after"))]
                    row[name] = _run(cmd, tree)
                if "before" in row and "error" not in row["before"] and "error" not in row["after"]:
                    old, new = np.load(f"{tmp}/{config}_before.npz"), np.load(f"{tmp}/{config}_after.npz")
                    row["max_abs_diff_after_vs_before"] = float(max(np.abs(old[k] - new[k]).max() for k in old))
                    row["speedup_batch_1"] = round(row["before"]["batch_1"]["seconds"]
                                                   / row["after"]["batch_1"]["seconds"], 3)
                    best = row["after"][f"batch_{batch_size}"]["seconds"]
                    row[f"speedup_batch_{batch_size}_vs_before"] = round(row["before"]["batch_1"]["seconds"] / best, 3)
                    if "batch_1_compiled" in row["after"]:
                        row["speedup_batch_1_compiled_vs_before"] = round(
                            row["before"]["batch_1"]["seconds"] / row["after"]["batch_1_compiled"]["seconds"], 3)
                results.append({"config": config, **row})
        finally:
            if before:
                subprocess.run(["git", "worktree", "remove", "--force", str(trees["before"])], cwd=REPO,
                               capture_output=True, check=False)
    return {"before_rev": before, "results": results}


def _run(cmd: list[str], tree: Path) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(tree)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tree)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-3:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


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
    parser.add_argument("--batched", action="store_true", help="batch 1 vs --batch-size, and --before REV")
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=2.0, help="mean file length for --batched")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--before", default=None, help="git revision to compare with (--batched)")
    parser.add_argument("--compile", action="store_true", help="also batch 1 with compile=True (--batched)")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--batched-worker", nargs=7, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.batched_worker:
        c, n, s, t, b, out, comp = args.batched_worker
        print(json.dumps(batched_worker(c, int(n), float(s), int(t), int(b), out, comp == "1")))
        return
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "threads": args.threads,
               "load_average_1min": round(os.getloadavg()[0], 2)}
    if args.batched:
        report = run_batched(args.configs, args.files, args.seconds, args.threads, args.batch_size, args.before,
                             args.compile)
        print(json.dumps({"machine": machine, **report}, indent=2))
        return
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
