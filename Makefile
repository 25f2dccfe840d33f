# Two commands do all set-up on a fresh Linux machine with Python 3.11 and a C compiler:
#   make test   creates .venv if missing, installs restorekit with its test extras, runs pytest offline
#   make demo   installs, then runs the main job
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
OFFLINE := HF_HUB_OFFLINE=1 WANDB_MODE=disabled

.PHONY: install test demo clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml requirements.txt constraints.txt scripts/install_system_deps.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip setuptools wheel
	$(PIP) install -c constraints.txt torch==2.13.0
	$(PIP) install -c constraints.txt -e '.[test]'
	bash scripts/install_system_deps.sh
	touch $(STAMP)

test: $(STAMP)
	$(OFFLINE) $(PY) -m pytest -q $(PYTEST_ARGS)

demo: $(STAMP)
	$(OFFLINE) $(PY) -m restorekit list

clean-venv:
	rm -rf $(VENV)
