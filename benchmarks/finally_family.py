"""HiFi++ / FINALLY restoration and training speed on this CPU (issue 13); prints JSON.

Inference: for each generator and duration, a fresh worker process builds the generator at full
size with random weights (offline; the cost of a forward pass does not depend on the weight
values), wraps it in ``WaveRestorer`` (10 s chunks, 1 s overlap: 60 s is seven chunks) and
restores synthetic 16 kHz audio under ``torch.inference_mode``. It reports the real-time factor
(processing seconds / audio seconds; below 1 is faster than real time), the build time and the
process's peak RSS (``ru_maxrss``: one process per case, so peaks do not mix). Generators:

- ``a2a_hifipp``: audio-to-audio HiFi++ (1.71M parameters), 16 kHz out;
- ``finally_16k``: FINALLY with a WavLM-Large-sized encoder, ``upsample: false`` (16 kHz out);
- ``finally_48k``: the same with the stage-3 upsampler (``upsample: true``, 48 kHz out).

Training: steps/s of each quickstart stage (FINALLY stages 1, 2, 3 pre-training, 3; HiFi-GAN;
HiFi++), each in its own process, timed over the steps after ``--warmup`` warm-up steps with a
trainer callback (as ``benchmarks/training.py`` does). ``init_from`` / ``init_weights`` are
cleared so each stage runs alone (weights do not change the speed); periodic validation,
checkpoints and the export are switched off, so only training steps are timed. A config that is
missing is reported as skipped.

    HF_HUB_OFFLINE=1 WANDB_MODE=disabled python benchmarks/finally_family.py            # everything
    python benchmarks/finally_family.py --quick                   # 10 s inference only, 6 training steps
    python benchmarks/finally_family.py --cases finally_48k --durations 60 --no-training
    python benchmarks/finally_family.py --no-inference --stages finally_stage1 hifigan
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

# WavLM-Large's transformers sizes (the conv feature encoder's defaults are already Large's)
WAVLM_LARGE = {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096,
               "feat_extract_norm": "layer", "do_stable_layer_norm": True, "conv_bias": True, "num_buckets": 320,
               "max_bucket_distance": 800}


def finally_node(upsample: bool) -> dict:
    wavlm = {"name": "wavlm", "args": {"pretrained": None, "layer": 24, "config": WAVLM_LARGE}}
    return {"name": "finally", "args": {"wavlm": wavlm, "upsample": upsample}}


CASES = {
    "a2a_hifipp": lambda: {"name": "a2a_hifipp"},
    "finally_16k": lambda: finally_node(False),
    "finally_48k": lambda: finally_node(True),
}
STAGES = {
    "finally_stage1": "configs/finally/quickstart/stage1.yaml",
    "finally_stage2": "configs/finally/quickstart/stage2.yaml",
    "finally_stage3_pretrain": "configs/finally/quickstart/stage3_pretrain.yaml",
    "finally_stage3": "configs/finally/quickstart/stage3.yaml",
    "hifigan": "configs/hifigan/quickstart.yaml",
    "hifipp": "configs/hifipp/quickstart.yaml",
}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def speech_like(seconds: float, sr: int = 16000):
    import numpy as np

    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
            + 0.03 * np.random.default_rng(0).standard_normal(len(t))).astype(np.float32)


def infer_worker(case: str, seconds: float, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    from restorekit.models import MODELS
    from restorekit.models.wave_restorer import WaveRestorer

    start = time.perf_counter()
    generator = MODELS.build(CASES[case](), where=f"benchmark.{case}")
    restorer = WaveRestorer(generator, chunk_seconds=10.0, overlap_seconds=1.0)
    build_s = time.perf_counter() - start
    built_rss = peak_rss_mb()
    wave = speech_like(seconds)
    with torch.inference_mode():
        cpu, start = cpu_seconds(), time.perf_counter()
        out, rate = restorer.restore(wave, 16000)
        elapsed, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    assert out.shape[0] == round(len(wave) * rate / 16000), "restored length does not match the input"
    params = sum(p.numel() for p in generator.parameters())
    wavlm = getattr(generator, "wavlm", None)
    return {"case": case, "audio_seconds": seconds, "output_rate": rate, "threads": torch.get_num_threads(),
            "seconds": round(elapsed, 2), "rtf": round(elapsed / seconds, 4), "build_seconds": round(build_s, 1),
            "cores_used": round(cpu / elapsed, 2),  # CPU s / wall s: below `threads` when other jobs took cores
            "rss_after_build_mb": round(built_rss, 1), "peak_rss_mb": round(peak_rss_mb(), 1),
            "parameters_m": round(params / 1e6, 2),
            "wavlm_parameters_m": round(sum(p.numel() for p in wavlm.parameters()) / 1e6, 2) if wavlm else 0.0}


def train_worker(config: str, out: str, steps: int, warmup: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    from omegaconf import OmegaConf

    from restorekit.config import load_config
    from restorekit.trainers import TRAINERS

    cfg = load_config([f"exp.config_path={config}", f"exp.output_dir={out}", "exp.device=cpu", "exp.logger=console"])
    # each stage alone (init_from / init_weights: the previous stages' exports only set the starting
    # weights, not the cost of a step); only training steps: no periodic validation, no export
    for key, value in {"max_steps": steps, "export": False, "valid_every": 0, "log_every": steps,
                       "ckpt_every": steps, "max_valid_items": 1, "init_from": {}, "init_weights": {}}.items():
        OmegaConf.update(cfg, f"trainer.args.{key}", value, merge=False, force_add=True)
    trainer = TRAINERS.get(str(cfg.trainer.name)).from_config(cfg)
    trainer.validate = lambda *a, **k: None  # the final validation and checkpoint are not what is measured
    trainer.save_checkpoint = lambda *a, **k: None
    stamps: list[tuple[float, float]] = []
    trainer.callbacks.append(lambda t: stamps.append((time.perf_counter(), cpu_seconds())))
    trainer.fit()
    timed = [t for t, _ in stamps[warmup - 1:]]  # the end of the last warm-up step, then each timed step's end
    cpu = stamps[-1][1] - stamps[warmup - 1][1]
    trained = {r: round(sum(p.numel() for p in m.parameters() if p.requires_grad) / 1e6, 3)
               for r, m in trainer.models.items() if r in trainer.trainable_roles}
    return {"config": config, "trainer": str(cfg.trainer.name), "threads": torch.get_num_threads(),
            "steps_per_s": round((len(timed) - 1) / (timed[-1] - timed[0]), 3),
            "seconds_per_step": round((timed[-1] - timed[0]) / (len(timed) - 1), 3),
            "timed_steps": len(timed) - 1, "cores_used": round(cpu / (timed[-1] - timed[0]), 2),
            "batch": int(cfg.data.batch_size),
            "segment_seconds": float(cfg.data.train.args.get("segment_seconds", 0) or 0),
            "sample_rate": int(cfg.data.sample_rate), "trainable_parameters_m": trained,
            "peak_rss_mb": round(peak_rss_mb(), 1)}


def run_worker(args: list[str], timeout: float | None) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", *args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO)}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
    return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}


def machine(threads: int) -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": threads, "torch": torch.__version__,
            "cuda": False, "python": platform.python_version()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--durations", nargs="+", type=float, default=[10.0, 60.0])
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=list(STAGES))
    parser.add_argument("--steps", type=int, default=10, help="training steps per stage, warm-up included")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch threads per worker process")
    parser.add_argument("--timeout", type=float, default=None, help="seconds allowed per case (default: none)")
    parser.add_argument("--quick", action="store_true", help="10 s inference only and 6 training steps (2 warm-up)")
    parser.add_argument("--no-inference", action="store_true")
    parser.add_argument("--no-training", action="store_true")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, *rest = args.worker
        if kind == "infer":
            result = infer_worker(rest[0], float(rest[1]), int(rest[2]))
        else:
            result = train_worker(rest[0], rest[1], int(rest[2]), int(rest[3]), int(rest[4]))
        print("RESULT " + json.dumps(result), flush=True)
        return
    if args.quick:
        args.durations, args.steps, args.warmup = [10.0], 6, 2
    if args.warmup < 1 or args.steps < args.warmup + 2:
        parser.error("need --warmup >= 1 and --steps >= warmup + 2 (two timed steps at least)")
    report: dict = {"machine": machine(args.threads), "load_average_before": list(os.getloadavg()),
                    "chunk_seconds": 10.0, "overlap_seconds": 1.0, "random_init": True}
    if not args.no_inference:
        results = []
        for case in args.cases:
            for seconds in args.durations:
                r = run_worker(["infer", case, str(seconds), str(args.threads)], args.timeout)
                results.append({"case": case, "audio_seconds": seconds, **r})
                print(json.dumps(results[-1]), file=sys.stderr, flush=True)  # progress
        report["inference"] = results
    if not args.no_training:
        stages, skipped = {}, {}
        with tempfile.TemporaryDirectory(prefix="rk_bench_finally_") as tmp:
            for stage in args.stages:
                config = STAGES[stage]
                if not (REPO / config).is_file():
                    skipped[stage] = f"{config} does not exist"
                    continue
                stages[stage] = run_worker(["train", config, f"{tmp}/{stage}", str(args.steps), str(args.warmup),
                                            str(args.threads)], args.timeout)
                print(json.dumps({stage: stages[stage]}), file=sys.stderr, flush=True)
        report["training"] = {"steps": args.steps, "warmup": args.warmup, "stages": stages, "skipped": skipped}
    report["load_average_after"] = list(os.getloadavg())
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
