# Two commands do all set-up on a fresh Linux machine with Python 3.11 and a C compiler:
#   make test   creates .venv if missing, installs restorekit[all,test] (and the system packages the
#               browser tests use), runs ruff and pytest offline
#   make demo   installs restorekit[all] (no system packages), then runs the main job
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
OFFLINE := HF_HUB_OFFLINE=1 WANDB_MODE=disabled

.PHONY: install system-deps lint test demo demo-miipher2 clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml requirements.txt constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip setuptools wheel
	$(PIP) install -c constraints.txt torch==2.13.0
	$(PIP) install -c constraints.txt -e '.[all]'
	touch $(STAMP)

# The test set-up only: test tools, and the browser the report and app tests drive.
$(TEST_STAMP): $(STAMP) scripts/install_system_deps.sh
	$(PIP) install -c constraints.txt -e '.[all,test]'
	$(MAKE) --no-print-directory system-deps
	touch $(TEST_STAMP)

# System packages some tests use (scripts/install_system_deps.sh). Not installable: fatal in CI
# (CI=true), where every test must run; a warning elsewhere, where the tests that need them skip.
system-deps:
	bash scripts/install_system_deps.sh || case "$$(printf %s "$${CI:-}" | tr A-Z a-z)" in \
	  true|1|yes) echo "CI=$$CI: the tests need these system packages" >&2; exit 1;; \
	  *) echo "warning: the tests that need the missing system packages will skip" >&2;; esac

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check .

# TEST_WORKERS pytest-xdist processes, one test file each at a time (--dist loadfile keeps a file's
# module fixtures in one process), each with one torch thread: on 2 cores the suite took 5 min 0 s
# this way and 8 min 52 s serially (2026-11-28). TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2
test: $(TEST_STAMP) lint
	$(OFFLINE) OMP_NUM_THREADS=1 $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# The demo (configs/quickstart/restorer.yaml): a small HiFi++ restorer trains on the embedded eSpeak NG
# demo corpus (progress bar with ETA on a terminal), restores a seeded degraded copy of the demo's
# validation split (voices and sentences it never heard), and evaluate.py scores it beside the
# input (identity) and two baselines against the clean files: the summary table with 95% CIs,
# then the path of the HTML report. About 7 minutes on 2 shared CPU cores (README).
# It starts fresh every time (rm -rf DEMO_DIR), so a second `make demo` never trips on old outputs.
# DEMO_THREADS: torch threads per process. 1 because the demo machine's 2 cores are shared: two
# threads on a busy core ran a step 4x slower than one; raise it on an idle machine.
DEMO_DIR     ?= outputs/demo
DEMO_STEPS   ?= 600
DEMO_THREADS ?= 1
DEMO_ENV      = $(OFFLINE) OMP_NUM_THREADS=$(DEMO_THREADS)
DEMO_TRAIN    = $(DEMO_ENV) $(PY) train.py exp.device=cpu trainer.args.valid_every=0

demo: $(STAMP)
	rm -rf $(DEMO_DIR)
	$(DEMO_TRAIN) exp.config_path=configs/quickstart/restorer.yaml exp.output_dir=$(DEMO_DIR)/restorer \
	  trainer.args.max_steps=$(DEMO_STEPS) trainer.args.ckpt_every=$(DEMO_STEPS)
	$(DEMO_ENV) $(PY) scripts/make_demo_eval_set.py --config configs/quickstart/restorer.yaml --out $(DEMO_DIR)/eval_set
	$(DEMO_ENV) $(PY) inference.py exp.ckpt_dir=$(DEMO_DIR)/restorer/export exp.device=cpu \
	  input=$(DEMO_DIR)/eval_set/degraded output_dir=$(DEMO_DIR)/restored
	$(DEMO_ENV) $(PY) evaluate.py exp.config_path=configs/quickstart/demo_eval.yaml exp.output_dir=$(DEMO_DIR)/eval \
	  data.inputs=$(DEMO_DIR)/eval_set/degraded data.references=$(DEMO_DIR)/eval_set/clean \
	  +systems.restorer=$(DEMO_DIR)/restored

# A pipeline check, not a restorer: quickstart Miipher-2 stages 1-3 (each loading the previous
# stages' exports) for a few dozen steps, then restore and score as above. Its output is noise:
# Miipher-2 re-synthesises speech through a vocoder that needs far more training than minutes.
MIIPHER2_DIR   ?= outputs/demo-miipher2
MIIPHER2_STEPS ?= 40 8 8
MIIPHER2_TRAIN  = $(DEMO_TRAIN)

demo-miipher2: $(STAMP)
	rm -rf $(MIIPHER2_DIR)
	$(MIIPHER2_TRAIN) exp.config_path=configs/quickstart/stage1.yaml exp.output_dir=$(MIIPHER2_DIR)/stage1 \
	  trainer.args.max_steps=$(word 1,$(MIIPHER2_STEPS)) trainer.args.ckpt_every=$(word 1,$(MIIPHER2_STEPS))
	$(MIIPHER2_TRAIN) exp.config_path=configs/quickstart/stage2.yaml exp.output_dir=$(MIIPHER2_DIR)/stage2 \
	  trainer.args.max_steps=$(word 2,$(MIIPHER2_STEPS)) trainer.args.ckpt_every=$(word 2,$(MIIPHER2_STEPS)) trainer.args.log_every=2
	$(MIIPHER2_TRAIN) exp.config_path=configs/quickstart/stage3.yaml exp.output_dir=$(MIIPHER2_DIR)/stage3 \
	  trainer.args.max_steps=$(word 3,$(MIIPHER2_STEPS)) trainer.args.ckpt_every=$(word 3,$(MIIPHER2_STEPS)) trainer.args.log_every=2 \
	  trainer.args.init_from.feature_cleaner=$(MIIPHER2_DIR)/stage1/export \
	  trainer.args.init_from.vocoder=$(MIIPHER2_DIR)/stage2/export \
	  trainer.args.init_from.discriminators=$(MIIPHER2_DIR)/stage2/export
	$(DEMO_ENV) $(PY) scripts/make_demo_eval_set.py --config configs/quickstart/stage3.yaml --out $(MIIPHER2_DIR)/eval_set
	$(DEMO_ENV) $(PY) inference.py exp.ckpt_dir=$(MIIPHER2_DIR)/stage3/export exp.device=cpu \
	  input=$(MIIPHER2_DIR)/eval_set/degraded output_dir=$(MIIPHER2_DIR)/restored
	$(DEMO_ENV) $(PY) evaluate.py exp.config_path=configs/eval/paired.yaml exp.name=demo-miipher2 \
	  exp.output_dir=$(MIIPHER2_DIR)/eval report.html=false data.references=$(MIIPHER2_DIR)/eval_set/clean \
	  +systems.restored=$(MIIPHER2_DIR)/restored +systems.degraded=$(MIIPHER2_DIR)/eval_set/degraded

clean-venv:
	rm -rf $(VENV)
