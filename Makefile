# gankit: two commands do everything.  `make demo` trains and draws; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
DATA ?= $(abspath ../shared/data)
export GANKIT_DATA ?= $(DATA)

.PHONY: demo test lint install clean

# The venv is ready when gankit is installed in it (editable) with the dev tools.
$(BIN)/gankit: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@# PyTorch first: with an NVIDIA GPU, the default (CUDA) build; without one, the CPU build
	@# (the +cpu local version never resolves to a multi-GB CUDA wheel). Elsewhere, add the CPU index:
	@#   PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu make demo
	@if $(BIN)/python -c "import torch" 2>/dev/null; then echo "torch already installed"; \
	elif command -v nvidia-smi >/dev/null 2>&1; then $(BIN)/pip install "torch==$(TORCH_VERSION)"; \
	else $(BIN)/pip install "torch==$(TORCH_VERSION)+cpu" || $(BIN)/pip install "torch==$(TORCH_VERSION)" \
	  --index-url https://download.pytorch.org/whl/cpu; fi
	$(BIN)/pip install -e ".[dev]"
	@touch $@

install: $(BIN)/gankit

demo: $(BIN)/gankit
	@run=runs/demo-$$(date +%Y%m%d-%H%M%S); \
	$(BIN)/gankit train --preset seed002-mlp-mnist --set data.dataset=mnist-demo --steps 2000 --out $$run --no-progress \
	&& $(BIN)/gankit sample $$run --n 64 --out $$run/demo-grid.png \
	&& echo "sample grid: $$run/demo-grid.png"

test: $(BIN)/gankit
	$(BIN)/python -m pytest

lint: $(BIN)/gankit
	$(BIN)/ruff check gankit tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
