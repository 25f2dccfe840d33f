"""Two-process DDP (gloo on CPU) under a real `torchrun --standalone`: the quickstart stage-1
trainer, a few steps. Both ranks must end with identical weights, and the ranks must have
trained on disjoint halves of the data that together cover the whole epoch."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from restorekit.trainers import checkpoint

REPO = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).with_name("torchrun")

# Runs on every rank: the real trainer from the quickstart config, then a dump of this rank's
# trainable weights (the checkpoint only holds rank 0's, and the point is to compare ranks).
WORKER = '''
import sys
from safetensors.torch import save_file
from restorekit.config import load_config
from restorekit.trainers import TRAINERS

cfg = load_config(sys.argv[1:])
trainer = TRAINERS.get(cfg.trainer.name).from_config(cfg)
rank = trainer.dist.rank
def dump(tag):
    # only rank 0 creates the run folder in the trainer; rank 1 may get here first
    trainer.output_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().clone().contiguous() for k, v in trainer.model_state().items()},
              str(trainer.output_dir / f"{tag}_rank{rank}.safetensors"))
dump("init")
trainer.fit()
dump("params")
'''

BATCH, STEPS, ITEMS = 4, 4, 32  # 32 demo training items = 2 ranks x batch 4 x 4 steps: one epoch


def test_two_rank_ddp_keeps_ranks_identical_and_shards_the_data(tmp_path):
    out = tmp_path / "run"
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    overrides = [
        "exp.config_path=configs/quickstart/stage1.yaml", f"exp.output_dir={out}", "exp.device=cpu",
        f"data.batch_size={BATCH}", "data.train.args.segment_seconds=0.25", "data.valid.args.segment_seconds=0.25",
        f"trainer.args.max_steps={STEPS}", f"trainer.args.ckpt_every={STEPS}", "trainer.args.log_every=2",
        "trainer.args.max_valid_items=1", "+trainer.args.record_items=true",
    ]
    # one thread per rank: two ranks already fill the two cores
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    proc = subprocess.run([str(TORCHRUN), "--standalone", "--nproc_per_node=2", str(worker), *overrides],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"torchrun failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    assert (out / "export" / "feature_cleaner.safetensors").is_file(), proc.stdout[-2000:]

    # identical weights on both ranks, and equal to what rank 0 checkpointed
    ranks = [load_file(str(out / f"params_rank{r}.safetensors")) for r in (0, 1)]
    saved = checkpoint.load(checkpoint.resolve(str(out / "ckpt")))
    assert saved["state"]["step"] == STEPS and saved["state"]["world_size"] == 2
    assert set(ranks[0]) == set(ranks[1]) == set(saved["models"]) and ranks[0]
    for name in ranks[0]:
        assert torch.equal(ranks[0][name], ranks[1][name]), f"{name} differs between rank 0 and rank 1"
        assert torch.equal(ranks[0][name], saved["models"][name]), f"{name}: checkpoint differs from rank 0"
    init = load_file(str(out / "init_rank1.safetensors"))
    assert any(not torch.equal(init[n], ranks[1][n]) for n in init), "training left the weights unchanged"

    # each rank saw a distinct half of epoch 0; together they cover every item once
    seen = []
    for r in (0, 1):
        lines = (out / "items" / f"rank{r}.txt").read_text().splitlines()
        seen.append([line.split("\t")[1] for line in lines])
        assert len(seen[r]) == STEPS * BATCH, f"rank {r} trained on {len(seen[r])} items, expected {STEPS * BATCH}"
    assert not set(seen[0]) & set(seen[1]), f"ranks shared items: {sorted(set(seen[0]) & set(seen[1]))}"
    assert len(set(seen[0]) | set(seen[1])) == ITEMS == len(seen[0]) + len(seen[1])
