#!/usr/bin/env bash
# One short check of the CUDA path (issue 17), under 8 minutes on one H100; prints JSON at the end.
#   1. the CUDA-marked tests (pytest -m cuda),
#   2. 3 bf16 training steps of each quickstart stage: Miipher-2 stages 1-3 (chained through their
#      exports), FINALLY stages 1-2 (chained), HiFi-GAN, HiFi++, Miipher-1 stage 1 and the Mimi codec,
#      each under a timeout,
#   3. full-size Miipher-2 restoration (w2v-BERT 2.0 + WaveFit-5, random weights: a forward pass costs
#      the same whatever the weights) at batch 1, 8 and 16: x real time and peak GPU memory,
#   4. the same at batch 8 with compile=True (WaveFit through torch.compile), its compile time apart.
#
# Run from the repository root:   bash benchmarks/gpu_check.sh
# Set-up it expects (what `make install` does; on a fresh machine run it first, PyPI's Linux torch
# wheel is the CUDA build):
#   python3 -m venv .venv && .venv/bin/pip install -c constraints.txt torch==2.13.0 \
#     && .venv/bin/pip install -c constraints.txt -e '.[all,test]'
# PYTHON picks the interpreter (default .venv/bin/python, else python3). Without CUDA it says so and
# exits 0. GPU_CHECK_DRY=1 runs the same steps on the CPU with tiny sizes (quickstart-size restorer,
# short files), to check the script itself where there is no GPU.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
DRY="${GPU_CHECK_DRY:-0}"
STAGE_LIMIT=150  # seconds per training stage; the dry run on a small shared CPU needs more
[ "$DRY" = "1" ] && STAGE_LIMIT=600
export HF_HUB_OFFLINE=1 WANDB_MODE=disabled TRANSFORMERS_OFFLINE=1

if ! "$PY" -c "import restorekit, torch" 2>/dev/null; then
  echo "gpu_check: $PY cannot import restorekit and torch; set up first (see the head of this script):" >&2
  echo "  python3 -m venv .venv && .venv/bin/pip install -c constraints.txt torch==2.13.0 && .venv/bin/pip install -c constraints.txt -e '.[all,test]'" >&2
  exit 2
fi
if [ "$DRY" = "1" ]; then
  DEVICE=cpu; PRECISION=fp32
  echo "gpu_check: GPU_CHECK_DRY=1: the same steps on the CPU, tiny sizes (no figure here is a GPU's)" >&2
elif "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  DEVICE=cuda; PRECISION=bf16
else
  echo "gpu_check: no CUDA device here (torch.cuda.is_available() is False); nothing to check. GPU_CHECK_DRY=1 runs the steps on the CPU." >&2
  exit 0
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/rk_gpu_check.XXXXXX")"
RESULTS="$WORK/results.jsonl"
: > "$RESULTS"
record() {  # record NAME RC SECONDS
  printf '{"step": "%s", "rc": %s, "seconds": %s}\n' "$1" "$2" "$3" >> "$RESULTS"
}
timed() {  # timed NAME TIMEOUT_S CMD...: run with a timeout, log to $WORK/NAME.log, record rc and time
  local name=$1 limit=$2 start rc
  shift 2
  start=$(date +%s%N)
  timeout "$limit" "$@" > "$WORK/$name.log" 2>&1
  rc=$?
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  record "$name" "$rc" "$((ms / 1000)).$(printf %03d $((ms % 1000)))"
  [ "$rc" = 0 ] || { echo "gpu_check: $name failed (rc $rc); last lines of $WORK/$name.log:" >&2; tail -5 "$WORK/$name.log" >&2; }
}

# 1. CUDA-marked tests (in the dry run they skip: that they are collected is what is checked).
timed cuda_tests 240 "$PY" -m pytest -q -m cuda tests/

# 2. A few bf16 training steps of each stage, chained where a stage starts from the one before.
train() {  # train NAME CONFIG [OVERRIDES...]
  local name=$1 config=$2
  shift 2
  timed "train_$name" "$STAGE_LIMIT" "$PY" train.py "exp.config_path=$config" "exp.output_dir=$WORK/$name" \
    "exp.device=$DEVICE" "exp.precision=$PRECISION" exp.logger=console trainer.args.max_steps=3 "$@"
}
train miipher2_stage1 configs/quickstart/stage1.yaml
train miipher2_stage2 configs/quickstart/stage2.yaml
train miipher2_stage3 configs/quickstart/stage3.yaml \
  "trainer.args.init_from.feature_cleaner=$WORK/miipher2_stage1/export" \
  "trainer.args.init_from.vocoder=$WORK/miipher2_stage2/export" \
  "trainer.args.init_from.discriminators=$WORK/miipher2_stage2/export"
train finally_stage1 configs/finally/quickstart/stage1.yaml
train finally_stage2 configs/finally/quickstart/stage2.yaml \
  "trainer.args.init_from.generator=$WORK/finally_stage1/export"
train hifigan configs/hifigan/quickstart.yaml
train hifipp configs/hifipp/quickstart.yaml
train miipher1_stage1 configs/miipher1/quickstart/stage1.yaml
train mimi_codec configs/mimi/quickstart.yaml

# 3. Full-size restoration throughput at batch 1, 8 and 16, with peak GPU memory; 4. batch 8 compiled.
cat > "$WORK/inference.py" <<'EOF'
import json, sys, time
import numpy as np, torch
from restorekit.config import apply_overrides, load_yaml
from restorekit.models.miipher2 import Miipher2

device, dry, out, compiled = sys.argv[1], sys.argv[2] == "1", sys.argv[3], sys.argv[4] == "compile"
config = "configs/quickstart/models.yaml" if dry else "configs/miipher2/models_w2v_bert2.yaml"
cfg = apply_overrides(load_yaml(config), [] if dry else ["models.feature_cleaner.args.encoder.args.pretrained=null"])
torch.manual_seed(0)
restorer = Miipher2(cfg.models.feature_cleaner, cfg.models.vocoder, compile=compiled).to(device)
sr, seconds, files = 16000, (0.5 if dry else 10.0), 16
t = np.arange(int(seconds * sr)) / sr
waves = [(0.3 * np.sin(2 * np.pi * (150 + 10 * i) * t) + 0.03 * np.random.default_rng(i).standard_normal(len(t)))
         .astype(np.float32) for i in range(files)]
cuda = device == "cuda"
sync = torch.cuda.synchronize if cuda else (lambda: None)
start = time.perf_counter()
restorer.restore_batch(waves[:2], sr, batch_size=2)  # warm-up: kernels, allocator (and the compile)
warm_up = round(time.perf_counter() - start, 1)
rows = []
for batch in ((8,) if compiled else (1, 8, 16)):
    n = 4 if batch == 1 else files  # batch 1 on 4 files is enough for its rate
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    sync(); start = time.perf_counter()
    outs = restorer.restore_batch(waves[:n], sr, batch_size=batch)
    sync(); wall = time.perf_counter() - start
    assert all(np.isfinite(y).all() and len(y) == round(len(t) * 1.5) for y, _ in outs)
    rows.append({"batch": batch, "files": n, "audio_seconds": n * seconds, "seconds": round(wall, 3),
                 "x_real_time": round(n * seconds / wall, 1),
                 "peak_gpu_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None})
info = {"config": config, "device": torch.cuda.get_device_name() if cuda else "cpu (dry run)",
        "precision": "bf16 autocast" if cuda else "fp32", "parameters_m": round(sum(p.numel() for p in restorer.parameters()) / 1e6, 1),
        "compile": compiled, "warm_up_seconds": warm_up, "results": rows}
json.dump(info, open(out, "w"))
EOF
timed inference 300 "$PY" "$WORK/inference.py" "$DEVICE" "$DRY" "$WORK/inference.json" eager
timed inference_compiled 240 "$PY" "$WORK/inference.py" "$DEVICE" "$DRY" "$WORK/inference_compiled.json" compile

"$PY" - "$RESULTS" "$WORK/inference.json" "$DEVICE" "$DRY" "$WORK/inference_compiled.json" <<'EOF'
import json, pathlib, sys
steps = [json.loads(line) for line in open(sys.argv[1])]
inf, compiled = pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[5])
report = {"device": sys.argv[3], "dry_run": sys.argv[4] == "1", "steps": steps,
          "inference": json.loads(inf.read_text()) if inf.exists() else None,
          "inference_compiled": json.loads(compiled.read_text()) if compiled.exists() else None,
          "all_passed": all(s["rc"] == 0 for s in steps)}
print(json.dumps(report, indent=2))
sys.exit(0 if report["all_passed"] else 1)
EOF
status=$?
echo "gpu_check: logs in $WORK" >&2
exit $status
