"""Training speed and memory of the quickstart stages; prints JSON.

Per stage (1-3, in one temporary folder so stage 3 loads the stage-1/2 exports): steps/s over
the steps after warm-up and the process's peak RSS. Each stage runs in its own process, so one
stage's peak does not hide another's. Then stage 1 under `torchrun --standalone
--nproc_per_node=2` (gloo) against 1 process: samples/s of both and their ratio. A failing DDP
run is reported as an error string, not raised.

    HF_HUB_OFFLINE=1 WANDB_MODE=disabled python benchmarks/training.py [--steps 8 --warmup 3]

``--compare-stage2 REV`` instead measures quickstart stage 2 with WaveFit-5 on 1 s segments in
this tree and in a git worktree of REV (e.g. the commit before a change), in fresh processes,
alternating for ``--rounds`` rounds, and prints both side by side with their ratio.
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
    import restorekit

    result = {"steps_per_s": (len(timed) - 1) / (timed[-1] - timed[0]), "code": str(Path(restorekit.__file__).parent),
              "batch_per_process": int(cfg.data.batch_size), "world_size": trainer.dist.world_size,
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if trainer.dist.rank == 0:
        print("RESULT " + json.dumps(result), flush=True)


def run(cmd: list[str], pythonpath: Path = ROOT) -> dict:
    """Run a worker command (importing restorekit from ``pythonpath``); its RESULT line, or the error."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "PYTHONPATH": str(pythonpath)}
    proc = subprocess.run(cmd, cwd=pythonpath, env=env, capture_output=True, text=True, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
    return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}


STAGE2_WORK = ["models.vocoder.args.iterations=5", "data.train.args.segment_seconds=1.0", "data.batch_size=2"]


def compare_stage2(rev: str, steps: int, warmup: int, rounds: int) -> dict:
    """Stage-2 steps/s and peak RSS here and at ``rev`` (a temporary worktree), best of ``rounds``."""
    with tempfile.TemporaryDirectory(prefix="rk_bench_s2_") as tmp:
        before = Path(tmp) / "before"
        subprocess.run(["git", "worktree", "add", "--detach", str(before), rev], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            trees = {"before": before, "after": ROOT}
            runs: dict[str, list[dict]] = {k: [] for k in trees}
            for r in range(rounds):
                for name, tree in trees.items():
                    cmd = [sys.executable, str(tree / "benchmarks" / "training.py"), "--steps", str(steps),
                           "--warmup", str(warmup), "--worker", str(tree / "configs/quickstart/stage2.yaml"),
                           f"{tmp}/{name}{r}", *STAGE2_WORK]
                    runs[name].append(run(cmd, pythonpath=tree))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=ROOT, capture_output=True, check=False)
    best = {k: max((x for x in v if "error" not in x), key=lambda x: x["steps_per_s"], default=v[0])
            for k, v in runs.items()}
    report = {"rev_before": rev, "work": STAGE2_WORK, "rounds": runs, "best": best}
    if all("error" not in b for b in best.values()):
        report["speedup"] = best["after"]["steps_per_s"] / best["before"]["steps_per_s"]
        report["peak_rss_ratio"] = best["after"]["peak_rss_mb"] / best["before"]["peak_rss_mb"]
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--compare-stage2", metavar="REV", help="stage 2 here vs at git revision REV")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of --compare-stage2")
    parser.add_argument("--worker", nargs="+", metavar="ARG", help=argparse.SUPPRESS)  # CONFIG OUT [overrides]
    args = parser.parse_args()
    if args.warmup < 1 or args.steps < args.warmup + 2:
        parser.error("need --warmup >= 1 and --steps >= warmup + 2 (two timed steps at least)")
    if args.worker:
        worker(args.worker[0], args.worker[1], args.steps, args.warmup, args.worker[2:])
        return
    if args.compare_stage2:
        print(json.dumps(compare_stage2(args.compare_stage2, args.steps, args.warmup, args.rounds), indent=2))
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
