# The two commands of the README: `make demo` and `make test`. Both set up the
# environment first (tools/setup_env.py; a no-op when it is up to date).
PYTHON3 ?= python3
VENV ?= .venv
PYTHON := $(VENV)/bin/python
# Quick CPU config of the project's namesake matcher (see README, "Results").
DEMO_CONFIG ?= configs/quick/lada.yaml

.PHONY: setup data demo test

setup:
	$(PYTHON3) tools/setup_env.py --venv $(VENV)

data: setup
	$(PYTHON) datasets/make_synthetic.py

demo: data
	$(PYTHON) train_net.py --config-file $(DEMO_CONFIG)

test: setup
	$(PYTHON) -m pytest -q tests
