# The two commands of the README: `make demo` and `make test`. Both set up the
# environment first (tools/setup_env.py; a no-op when it is up to date).
PYTHON3 ?= python3
VENV ?= .venv
PYTHON := $(VENV)/bin/python
# A detectron2 source tree (e.g. a clone of upstream main) to test against instead of the
# installed detectron2: `LADA_DETECTRON2_SRC=/path/to/detectron2 make test`. Its pure-Python
# package goes first on the path; lada.compat stands in for its uncompiled `_C`.
LADA_DETECTRON2_SRC ?=
# Quick CPU config of the project's namesake matcher (see README, "Results").
DEMO_CONFIG ?= configs/quick/lada.yaml
# torch's CPU threads for the demo: one, as the README's demo figure was measured (and as
# its CPU training commands run); the thread count changes the float sums, so the AP.
# Yours wins: `OMP_NUM_THREADS=2 make demo` or `make demo OMP_NUM_THREADS=2`.
OMP_NUM_THREADS ?= 1

.PHONY: setup data demo test

setup:
	$(PYTHON3) tools/setup_env.py --venv $(VENV)

data: setup
	$(PYTHON) datasets/make_synthetic.py

demo: data
	OMP_NUM_THREADS=$(OMP_NUM_THREADS) $(PYTHON) train_net.py --config-file $(DEMO_CONFIG)

test: setup
ifeq ($(LADA_DETECTRON2_SRC),)
	$(PYTHON) -c "import lada.compat as c; print(c.detectron2_in_use())"
	$(PYTHON) -m pytest -q tests
else
	@test -f "$(LADA_DETECTRON2_SRC)/detectron2/__init__.py" || \
		{ echo "LADA_DETECTRON2_SRC=$(LADA_DETECTRON2_SRC) is not a detectron2 source tree (no detectron2/__init__.py)"; exit 2; }
	PYTHONPATH="$(abspath $(LADA_DETECTRON2_SRC))$${PYTHONPATH:+:$$PYTHONPATH}" $(PYTHON) -c \
		"import lada.compat as c; print(c.detectron2_in_use())"
	PYTHONPATH="$(abspath $(LADA_DETECTRON2_SRC))$${PYTHONPATH:+:$$PYTHONPATH}" $(PYTHON) -m pytest -q tests
endif
