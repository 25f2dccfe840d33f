"""Mimi's EMA codebooks under a real two-process `torchrun --standalone` (gloo, CPU): each rank
quantises different audio, yet k-means initialisation, EMA statistics, dead-code replacement and the
quantiser-dropout draw are shared, so both ranks end with identical codebooks."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).with_name("torchrun")

# No DDP wrapper on purpose: it would broadcast rank 0's buffers every step and hide a missing sync.
WORKER = '''
import sys
import torch
import torch.distributed as dist
from safetensors.torch import save_file
from restorekit.models.mimi import Mimi

dist.init_process_group("gloo")
rank = dist.get_rank()
torch.manual_seed(0)  # same initial weights on both ranks
model = Mimi(n_filters=4, dimension=16, transformer_layers=1, heads=2, ffn=32, n_q=4, codebook_size=16,
             codebook_dim=8).train()
torch.manual_seed(100 + rank)  # different audio, dropout draws and dead-code picks per rank
used = []
for step in range(3):
    with torch.no_grad():
        used.append(model(torch.randn(2, 3840) * 0.3)["n_q"])
books = {k: v for k, v in model.state_dict().items() if ".codebook." in k}
books["n_q_used"] = torch.tensor(used)
save_file(books, f"{sys.argv[1]}/rank{rank}.safetensors")
dist.destroy_process_group()
'''


# slow: two fresh processes import torch and the models package (about 10 s on an idle 2-core
# machine); a real torchrun is the only way to see the collectives pair up.
@pytest.mark.slow
def test_ema_codebooks_stay_identical_across_two_torchrun_ranks(tmp_path):
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    proc = subprocess.run([str(TORCHRUN), "--standalone", "--nproc_per_node=2", str(worker), str(tmp_path)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, f"torchrun failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    r0, r1 = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1))
    assert r0.keys() == r1.keys() and len(r0) == 3 * 4 + 1
    assert r0["n_q_used"].equal(r1["n_q_used"])  # the dropout draw is rank 0's on both
    semantic = "quantizer.semantic_residual_vector_quantizer.layers.0.codebook."
    assert r0[semantic + "initialized"].item() == 1  # k-means ran, then EMA steps
    for key in r0:
        torch.testing.assert_close(r0[key], r1[key], atol=1e-6, rtol=1e-6, msg=f"{key} differs between ranks")
