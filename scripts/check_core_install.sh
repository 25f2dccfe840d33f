#!/usr/bin/env bash
# The lean install: a fresh venv with `pip install .` (no extras) must import restorekit, train
# the quickstart stages 1-3 for a few steps each and restore a file with the export; then the
# sizes of that venv and of one with '.[all]' are printed. Needs the package index (downloads).
#   bash scripts/check_core_install.sh [WORK_DIR]      (default: a new temporary folder)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
WORK=${1:-$(mktemp -d)}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
export HF_HUB_OFFLINE=1 WANDB_MODE=disabled

make_venv() {  # make_venv DIR EXTRAS
  "$PYTHON" -m venv "$1"
  "$1/bin/pip" install -q --upgrade pip
  "$1/bin/pip" install -q -c "$REPO/constraints.txt" torch==2.13.0
  "$1/bin/pip" install -q -c "$REPO/constraints.txt" "$REPO$2"
}

make_venv "$WORK/core" ""
PY=$WORK/core/bin/python
cd "$WORK"  # run from outside the source tree, so the installed package is what is imported
rm -rf out restored sg in.wav  # a rerun in the same folder starts over
$PY -c "import restorekit, sys; assert 'torch' not in sys.modules; print('import ok', restorekit.__version__)"
for i in 1 2 3; do
  extra=()
  [ "$i" = 3 ] && extra=(trainer.args.init_from.feature_cleaner=out/stage1/export
                         trainer.args.init_from.vocoder=out/stage2/export
                         trainer.args.init_from.discriminators=out/stage2/export)
  $PY -m restorekit train "exp.config_path=$REPO/configs/quickstart/stage$i.yaml" exp.device=cpu \
    "exp.output_dir=out/stage$i" trainer.args.max_steps=2 trainer.args.ckpt_every=2 trainer.args.valid_every=0 \
    trainer.args.max_valid_items=1 "${extra[@]}" >/dev/null
done
$PY - <<'PY'
import numpy as np, soundfile as sf
sf.write("in.wav", (0.3 * np.sin(np.arange(16000) / 8)).astype(np.float32), 16000)
PY
$PY -m restorekit restore exp.ckpt_dir=out/stage3/export exp.device=cpu input=in.wav output_dir=restored
$PY -c "import soundfile as sf; info = sf.info('restored/in.wav'); assert info.samplerate == 24000 and info.frames == 24000; print('restored ok')"
# a baseline from an extra that is not installed: one line naming the extra, exit status 2
set +e
msg=$($PY -m restorekit restore enhancer=spectral_gating input=in.wav output_dir=sg 2>&1)
status=$?
set -e
[ "$status" = 2 ] && grep -q "pip install 'restorekit\[baselines\]'" <<<"$msg" \
  || { echo "missing extra not reported as expected (exit $status): $msg" >&2; exit 1; }
echo "missing extra reported ok: $msg"

make_venv "$WORK/all" "[all]"
echo "{\"core_mb\": $(du -sm "$WORK/core" | cut -f1), \"all_mb\": $(du -sm "$WORK/all" | cut -f1)}"
