# Two commands do everything on a fresh machine: `make run` and `make test` (each sets up .venv when needed).
PYTHON ?= python3
VENV ?= .venv
# The torch requirement. Machines with an NVIDIA driver get PyPI's regular (CUDA) torch; others get the pinned
# release that CI tests on. Override freely, e.g. `make test TORCH='torch==2.5.1'`.
TORCH ?= $(if $(shell command -v nvidia-smi 2>/dev/null),torch>=2.2,torch==2.13.0)
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test lint perf clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

run: setup
	$(BIN)/gpicl-bench run

test: setup lint
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

perf: setup
	$(BIN)/python benchmarks/perf/batched_vs_loop.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
