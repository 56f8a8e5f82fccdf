# Two entry points that work on a fresh machine (Python 3.10+ with venv):
#   make run    set up .venv if needed, then the first study: DR beside DMA*-SH on AIB's ODE
#               (CPU budget, one seed; report and figures in runs/study-*/)
#   make test   set up .venv if needed, then run the test suite (what CI runs)
#   make hypogen  the HyPoGen pipeline on its CPU default (lqr_di): experts, data, training, eval
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.hyperjax-installed
ARGS ?=

.PHONY: setup run hypogen test test-all bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(PY) -m experiments.aib --algo=dr,dma_sh --env=ode $(ARGS)

hypogen: $(STAMP)
	$(PY) -m experiments.hypogen $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder -m "not slow" --durations=25 $(ARGS)

test-all: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder $(ARGS)

bench: $(STAMP)
	$(PY) benchmarks/train_throughput.py $(ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
