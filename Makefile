# The whole set-up on a fresh machine is `make demo` and `make test`; both create .venv when missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.leignn-installed
# Optional: a PyG wheel index (find-links page) matching torch 2.4 and your CUDA, to skip the source build.
PYG_FIND_LINKS ?=
DEMO_DIR ?= demo_out
PYTEST_ARGS ?=

.PHONY: install test test-all demo lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip wheel setuptools
	$(BIN)/python -m pip install -q "torch~=2.4.0"
	@$(BIN)/python -c "import torch_scatter, torch_sparse" 2>/dev/null || { \
	  echo "building torch-scatter and torch-sparse for torch 2.4 (first time only: about 11 minutes on 2 cores)"; \
	  if [ -n "$(PYG_FIND_LINKS)" ]; then \
	    $(BIN)/python -m pip install -q torch-scatter==2.1.2 torch-sparse==0.6.18 -f "$(PYG_FIND_LINKS)"; \
	  else \
	    $(BIN)/python -m pip install -q --no-build-isolation torch-scatter==2.1.2 torch-sparse==0.6.18; \
	  fi || { echo "install failed: building torch-scatter/torch-sparse from source did not succeed (needs gcc, g++ and the Python headers; see the pip output above)"; exit 1; }; }
	$(BIN)/python -m pip install -q -e ".[dev]" || { echo "install failed: pip could not install leignn-plugin and its dependencies (see the pip output above)"; exit 1; }
	@$(BIN)/python -c "import leignn_plugin, fairchem.core.common.utils" || { echo "install failed: leignn_plugin does not import (see the error above)"; exit 1; }
	@touch $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-all: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/python -m leignn_plugin.workflows.demo --out $(DEMO_DIR)

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(DEMO_DIR) .pytest_cache .ruff_cache
