# Quick start: `make demo` (upload photos, train, generate) and `make test` (the whole suite).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# CPU build of torch, taken from this machine's disk; see README "GPU deployment" for CUDA.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: install test test-slow lint typecheck demo run bench-train bench-svd bench-size bench-quality bench-serve bench-api bench-faults base-model clean

$(STAMP): pyproject.toml clients/python/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[method,postgres,dev]"
	$(PIP) install -q -e clients/python
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy svdiff core api worker models
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy svdiff core api worker models

demo: $(STAMP)
	$(PY) -m demo

run: $(STAMP)
	$(PY) -m service.cli serve

bench-train: $(STAMP)
	$(PY) -m bench.train_step

bench-svd: $(STAMP)
	$(PY) -m bench.svd_cache

bench-size: $(STAMP)
	$(PY) -m bench.checkpoint_size

bench-quality: $(STAMP)
	$(PY) -m bench.quality

bench-serve: $(STAMP)
	$(PY) -m bench.serve

# The API under load (wrk; Debian: apt-get install -y wrk) in its production configuration: README "API under load".
bench-api: $(STAMP)
	$(PY) -m bench.api

# The service's processes on loopback under injected faults (worker SIGKILLs, Redis emptied, PostgreSQL restarted,
# S3 down 30 s, the API restarted): README "Faults under load".
bench-faults: $(STAMP)
	$(PY) -m bench.faults

base-model: $(STAMP)
	$(PY) -m basemodel.build

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
