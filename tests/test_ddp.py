"""Two-process DDP (gloo on CPU) under a real `torchrun --standalone`: the quickstart stage-1
trainer, a few steps. Both ranks must end with identical weights, and the ranks must have
trained on disjoint halves of the data that together cover the whole epoch. And gradient
accumulation across ranks (DDP's no_sync on all but the last micro-batch) gives the gradient of
the whole batch."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from restorekit.trainers import checkpoint
from test_trainers_base import TinyRegressionTrainer, record_update_grads, regression_cfg

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
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=240, check=False)
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


# Runs on every rank: one update of the tiny regression trainer accumulating two micro-batches of
# one item, then one of a batch of two; dumps the gradients each applied and the weights after.
ACCUM_WORKER = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
import torch
from safetensors.torch import save_file
from test_trainers_base import TinyRegressionTrainer, record_update_grads, regression_cfg

out = Path(sys.argv[1])
for tag, batch, accum in (("accum", 1, 2), ("batch", 2, 1)):
    trainer = TinyRegressionTrainer(regression_cfg(out / tag, batch, grad_accum=accum))
    grads = record_update_grads(trainer)
    micro = trainer._batches()
    trainer._train_window([next(micro) for _ in range(accum)])
    dump = {{f"grad.{{i}}": g for i, g in enumerate(grads["generator"][0])}}
    dump.update({{f"param.{{k}}": v.contiguous() for k, v in trainer.model_state().items()}})
    save_file(dump, str(out / f"{{tag}}_rank{{trainer.dist.rank}}.safetensors"))
torch.distributed.destroy_process_group()
"""


def test_accumulation_across_two_ranks_equals_one_batch_of_all_their_items(tmp_path):
    """Two ranks, each accumulating two micro-batches of one item, apply the gradient of one batch
    of those four items (computed here in one process), and so does a batch of two per rank.
    Mutation caught: _no_sync_unless skipping the gradient sync on the last micro-batch too (ranks
    then step on their own gradients and drift apart)."""
    worker = tmp_path / "accum_worker.py"
    worker.write_text(ACCUM_WORKER.format(tests=str(REPO / "tests")))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    proc = subprocess.run([str(TORCHRUN), "--standalone", "--nproc_per_node=2", str(worker), str(tmp_path)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"torchrun failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    whole = TinyRegressionTrainer(regression_cfg(tmp_path / "whole", 4, grad_accum=1))
    expected = record_update_grads(whole)
    whole._train_window([next(whole._batches())])  # ranks' items 0, 1 = this batch's items 0, 2 and 1, 3
    for tag in ("accum", "batch"):
        ranks = [load_file(str(tmp_path / f"{tag}_rank{r}.safetensors")) for r in (0, 1)]
        for name in ranks[0]:
            assert torch.equal(ranks[0][name], ranks[1][name]), f"{tag}: {name} differs between the ranks"
        for i, grad in enumerate(expected["generator"][0]):
            # float32 log-magnitude gradients of 1-item and 4-item batches differ by ~3e-4 (relative)
            error = torch.linalg.vector_norm(ranks[0][f"grad.{i}"] - grad) / torch.linalg.vector_norm(grad)
            assert error < 1e-3, f"{tag}: gradient {i} is {float(error):.2%} away from the whole batch's"


def test_two_rank_ddp_gan_stage_with_sub_batches_keeps_ranks_identical(tmp_path):
    """FINALLY stage 3 (generator + MS-STFT discriminator, two D updates a step, sub-batches of one
    generator pass) under torchrun: generator and discriminator weights end identical on both ranks."""
    out = tmp_path / "run"
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    overrides = [
        "exp.config_path=configs/finally/quickstart/stage3.yaml", f"exp.output_dir={out}", "exp.device=cpu",
        "data.batch_size=2", "trainer.args.init_from={}", "trainer.args.max_steps=2", "trainer.args.ckpt_every=2",
        "trainer.args.log_every=1", "trainer.args.max_valid_items=1", "trainer.args.num_audio_samples=0",
        "trainer.args.sub_batches=2", "trainer.args.discriminator_steps=2",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    proc = subprocess.run([str(TORCHRUN), "--standalone", "--nproc_per_node=2", str(worker), *overrides],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, f"torchrun failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    ranks = [load_file(str(out / f"params_rank{r}.safetensors")) for r in (0, 1)]
    roles = {name.split(".")[0] for name in ranks[0]}
    assert roles == {"generator", "discriminators"} and set(ranks[0]) == set(ranks[1])
    for name in ranks[0]:
        assert torch.equal(ranks[0][name], ranks[1][name]), f"{name} differs between rank 0 and rank 1"
    init = load_file(str(out / "init_rank0.safetensors"))
    for role in roles:
        assert any(not torch.equal(init[n], ranks[0][n]) for n in init if n.startswith(role)), f"{role} did not train"
