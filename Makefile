# Two entry points: `make demo` and `make test`. Each builds .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DATA ?= $(abspath ../shared/data)
export MATBENCH_TS_DATA ?= $(DATA)
export MATMINER_DATA ?= $(DATA)/matminer
# idle OpenMP threads sleep instead of spinning: spinning stalls small torch models on 2-core VMs
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: demo test install clean

$(VENV)/installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	# torch first: 2.13.0 is the local CPU wheel; any other request pulls GBs of CUDA wheels
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q --no-deps --ignore-requires-python crabnet==2.0.8
	$(PY) -m pip install -q --no-deps matbench==0.6
	$(PY) -m pip install -q -e ".[test]"
	touch $@

install: $(VENV)/installed

demo: $(VENV)/installed
	$(PY) -m matbench_ts.demo --data $(DATA) --out out/demo

test: $(VENV)/installed
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) out
