"""Training speed and memory of the quickstart stages; prints JSON.

Per stage (1-3, in one temporary folder so stage 3 loads the stage-1/2 exports): steps/s over
the steps after warm-up and the process's peak RSS. Each stage runs in its own process, so one
stage's peak does not hide another's. Then stage 1 under `torchrun --standalone
--nproc_per_node=2` (gloo) against 1 process: samples/s of both and their ratio. A failing DDP
run is reported as an error string, not raised.

    HF_HUB_OFFLINE=1 WANDB_MODE=disabled python benchmarks/training.py [--steps 8 --warmup 3]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("stage1", "stage2", "stage3")


def worker(config: str, out: str, steps: int, warmup: int, overrides: list[str]) -> None:
    """Train `steps` steps in this process and print one JSON line of timings (rank 0 only)."""
    from restorekit.config import load_config
    from restorekit.trainers import TRAINERS

    cfg = load_config([f"exp.config_path={config}", f"exp.output_dir={out}", f"trainer.args.max_steps={steps}",
                       f"trainer.args.ckpt_every={steps}", f"trainer.args.log_every={steps}",
                       "trainer.args.max_valid_items=1", "exp.device=cpu", *overrides])
    trainer = TRAINERS.get(str(cfg.trainer.name)).from_config(cfg)
    stamps: list[float] = []
    trainer.callbacks.append(lambda t: stamps.append(time.perf_counter()))
    trainer.fit()
    timed = stamps[warmup - 1:]  # steps after the warm-up ones (allocation, first-call overheads)
    result = {"steps_per_s": (len(timed) - 1) / (timed[-1] - timed[0]),
              "batch_per_process": int(cfg.data.batch_size), "world_size": trainer.dist.world_size,
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if trainer.dist.rank == 0:
        print("RESULT " + json.dumps(result), flush=True)


def run(cmd: list[str]) -> dict:
    """Run a worker command; its RESULT line, or the error with the output's tail."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
    return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--worker", nargs="+", metavar="ARG", help=argparse.SUPPRESS)  # CONFIG OUT [overrides]
    args = parser.parse_args()
    if args.warmup < 1 or args.steps < args.warmup + 2:
        parser.error("need --warmup >= 1 and --steps >= warmup + 2 (two timed steps at least)")
    if args.worker:
        worker(args.worker[0], args.worker[1], args.steps, args.warmup, args.worker[2:])
        return
    me = [str(Path(__file__).resolve()), "--steps", str(args.steps), "--warmup", str(args.warmup), "--worker"]
    with tempfile.TemporaryDirectory(prefix="rk_bench_train_") as tmp:
        stages = {}
        for stage in STAGES:
            extra = []
            if stage == "stage3":  # the exports the two previous runs just wrote
                extra = [f"trainer.args.init_from.feature_cleaner={tmp}/stage1/export",
                         f"trainer.args.init_from.vocoder={tmp}/stage2/export",
                         f"trainer.args.init_from.discriminators={tmp}/stage2/export"]
            stages[stage] = run([sys.executable, *me, f"configs/quickstart/{stage}.yaml", f"{tmp}/{stage}", *extra])
        ddp = {"single": run([sys.executable, *me, "configs/quickstart/stage1.yaml", f"{tmp}/ddp1"]),
               "torchrun_2": run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                                  "--nproc_per_node=2", *me, "configs/quickstart/stage1.yaml", f"{tmp}/ddp2"])}
        if "error" not in ddp["single"] and "error" not in ddp["torchrun_2"]:
            rate = {k: v["steps_per_s"] * v["batch_per_process"] * v["world_size"] for k, v in ddp.items()}
            ddp["samples_per_s"] = rate
            ddp["relative_throughput"] = rate["torchrun_2"] / rate["single"]
    report = {"device": "cpu", "torch_threads_per_process": __import__("torch").get_num_threads(),
              "cpu_count": os.cpu_count(), "steps": args.steps, "warmup": args.warmup,
              "stages": stages, "ddp_stage1_gloo": ddp}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
