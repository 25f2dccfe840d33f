"""`python train.py trainer.ckpt_dir=RUN/ckpt/latest [overrides]` resumes with the checkpoint's
saved config plus the explicit overrides only (DESIGN.md §3), in real subprocesses."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf

from restorekit.trainers import checkpoint

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}


def train(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "train.py", *args], cwd=REPO, env=ENV, capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, f"train.py {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


def test_resume_uses_the_checkpoint_config_plus_cli_overrides(tmp_path):
    out = tmp_path / "run"
    # batch_size=2 differs from the YAML's 4: the resumed run must keep it without being told
    train("exp.config_path=configs/quickstart/stage1.yaml", f"exp.output_dir={out}", "exp.device=cpu",
          "data.batch_size=2", "data.train.args.segment_seconds=0.25", "data.valid.args.segment_seconds=0.25",
          "trainer.args.max_steps=2", "trainer.args.ckpt_every=2", "trainer.args.log_every=1",
          "trainer.args.max_valid_items=1")
    first = checkpoint.resolve(str(out / "ckpt" / "latest"))
    assert first.name == "step_00000002"

    proc = train(f"trainer.ckpt_dir={out / 'ckpt' / 'latest'}", "trainer.args.max_steps=4")
    assert "at step 2" in proc.stdout and "resumed from" in proc.stdout, proc.stdout[-2000:]
    assert "step 3 |" in proc.stdout and "step 1 |" not in proc.stdout, proc.stdout[-2000:]  # continued, not restarted

    latest = checkpoint.load(checkpoint.resolve(str(out / "ckpt")))
    assert latest["state"]["step"] == 4
    cfg = latest["config"]
    assert cfg.trainer.args.max_steps == 4  # the override
    assert cfg.data.batch_size == 2 and cfg.data.train.args.segment_seconds == 0.25  # the saved config, not the YAML
    assert OmegaConf.load(REPO / "configs/quickstart/stage1.yaml").data.batch_size == 4
    assert cfg.exp.output_dir == str(out)
