# Two commands do everything on a fresh machine: `make run` and `make test` (each sets up .venv when needed).
PYTHON ?= python3
VENV ?= .venv
# The torch requirement. Machines with an NVIDIA driver get PyPI's regular (CUDA) torch; others get the pinned
# release that CI tests on. Override freely, e.g. `make test TORCH='torch==2.5.1'`.
TORCH ?= $(if $(shell command -v nvidia-smi 2>/dev/null),torch>=2.2,torch==2.13.0)
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The learn2learn extra needs Python < 3.11 (its last release does not build on newer ones) and pulls its own torch.
L2L_PYTHON ?= python3.10
L2L_VENV ?= .venv-l2l

# The pretrained-encoder extras need a torchvision built for the same torch; PyPI's regular wheels pair these.
ENCODERS_VENV ?= .venv-encoders
ENCODERS_PINS ?= torch==2.14.1 torchvision==0.29.1 timm==1.0.31 open_clip_torch==3.3.0

# The peer that perf-peers times beside the engine; easyfsl imports torchvision, hence PyPI's regular pair again.
PEERS_VENV ?= .venv-peers
PEERS_PINS ?= torch==2.14.1 torchvision==0.29.1 easyfsl==1.5.0

.PHONY: setup run test lint perf perf-peers figures test-l2l test-encoders clean

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
	$(BIN)/python benchmarks/perf/harness.py --check --json results/perf.json

# Optional (about 6 GB): easyfsl's evaluation path beside the engine on the same features, interleaved and repeated;
# writes the table into benchmarks/perf/README.md and fails when the engine is under 50x faster.
perf-peers:
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install --quiet $(PEERS_PINS)
	$(PEERS_VENV)/bin/python -m pip install --quiet -e .
	$(PEERS_VENV)/bin/python benchmarks/perf/peers.py --check --readme benchmarks/perf/README.md --json results/perf-peers.json

# The README's figure from its spec's results (94 s on 2 idle cores; delete the results file to measure them again).
figures: results/readme-figures.h5
	$(BIN)/gpicl-bench plot $< -o docs/figures/digits-shots.png

results/readme-figures.h5: benchmarks/readme-figures.toml | setup
	$(BIN)/gpicl-bench run $< --out $@

# Optional and slow (a few GB of downloads): the learn2learn adapters, tested for real in their own environment.
test-l2l:
	test -x $(L2L_VENV)/bin/python || $(L2L_PYTHON) -m venv $(L2L_VENV)
	$(L2L_VENV)/bin/python -m pip install --quiet -e ".[dev,l2l]"
	$(L2L_VENV)/bin/python -m pytest tests/test_l2l.py

# Optional and slow (about 6 GB): the timm, open_clip and torchvision adapters against the libraries' own forward passes.
test-encoders:
	test -x $(ENCODERS_VENV)/bin/python || $(PYTHON) -m venv $(ENCODERS_VENV)
	$(ENCODERS_VENV)/bin/python -m pip install --quiet $(ENCODERS_PINS)
	$(ENCODERS_VENV)/bin/python -m pip install --quiet -e ".[dev]"
	$(ENCODERS_VENV)/bin/python -m pytest tests/test_encoder_adapters.py

clean:
	rm -rf $(VENV) $(L2L_VENV) $(ENCODERS_VENV) $(PEERS_VENV) .pytest_cache .ruff_cache *.egg-info
