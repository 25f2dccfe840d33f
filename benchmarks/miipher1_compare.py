"""Miipher-2's adapters vs Miipher-1's cleaner with and without text, on one tiny budget; prints JSON.

All three learn degraded -> clean features of the same tiny random w2v-BERT (the quickstart's:
64-d, layer 2) on the demo corpus (whole utterances, the Miipher-1 quickstart's degradations), with
the same steps, batch, optimizer (AdamW 3e-3, 5 warm-up steps), loss (``miipher_feature_loss``,
squared spectral convergence; Miipher-1 sums it over its 4 intermediate outputs, as its paper does)
and no EMA. Scored by the same loss on the final features over the whole validation split (24
utterances: voices and sentences never heard in training). Each variant runs in its own process.

    HF_HUB_OFFLINE=1 WANDB_MODE=disabled python benchmarks/miipher1_compare.py [--steps 150 --seeds 0 1]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "miipher1" / "quickstart" / "stage1.yaml"
VARIANTS = ("miipher2_adapters", "miipher1_text", "miipher1_no_text")


def _config(variant: str, out: str, steps: int, seed: int):
    from omegaconf import OmegaConf

    from restorekit.config import load_config, load_yaml

    cfg = load_config([f"exp.config_path={CONFIG}", f"exp.output_dir={out}", f"exp.seed={seed}", "exp.device=cpu",
                       f"trainer.args.max_steps={steps}", f"trainer.args.ckpt_every={steps}",
                       f"trainer.args.log_every={steps}", "trainer.args.ema_decay=null",
                       "trainer.args.max_valid_items=0", "+trainer.args.export=false"])
    if variant == "miipher2_adapters":
        cfg.trainer.name = "miipher2_feature_cleaner"
        cfg.models.feature_cleaner = load_yaml(ROOT / "configs" / "quickstart" / "models.yaml").models.feature_cleaner
    elif variant == "miipher1_no_text":
        cfg.models.feature_cleaner.args.text_encoder = None
    return OmegaConf.create(OmegaConf.to_container(cfg))


def worker(variant: str, steps: int, seed: int) -> None:
    """Train one variant in this process; print one RESULT line."""
    import torch

    from restorekit.trainers import TRAINERS

    torch.set_num_threads(1)  # the shared 2-core machine: one thread is fastest for tiny models
    with tempfile.TemporaryDirectory() as out:
        cfg = _config(variant, out, steps, seed)
        trainer = TRAINERS.get(str(cfg.trainer.name)).from_config(cfg)
        before = trainer.validate()
        start = time.perf_counter()
        trainer.fit()  # validates once more at the end, on the final weights (no EMA)
        seconds = time.perf_counter() - start
        after = trainer.validate()
    module = trainer.raw("feature_cleaner")
    result = {"variant": variant, "seed": seed, "steps": steps, "batch": int(trainer.cfg.data.batch_size),
              "trainable_params": sum(p.numel() for p in module.parameters() if p.requires_grad),
              "valid_loss_before": before["valid/loss/miipher_feature_loss"],
              "valid_loss_after": after["valid/loss/miipher_feature_loss"], "train_seconds": round(seconds, 1)}
    print("RESULT " + json.dumps(result), flush=True)


def run(variant: str, steps: int, seed: int) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, __file__, "--worker", variant, "--steps", str(steps), "--seeds", str(seed)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    return {"variant": variant, "seed": seed, "error": " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-5:])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--worker", choices=VARIANTS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.steps, args.seeds[0])
        return
    results = [run(v, args.steps, s) for s in args.seeds for v in VARIANTS]
    print(json.dumps({"steps": args.steps, "seeds": args.seeds, "results": results}, indent=2))


if __name__ == "__main__":
    main()
