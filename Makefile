# `make run` and `make test` set everything up on a fresh machine: a .venv with torch and lit_gen.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The torch build to install; override for another platform, e.g. make TORCH="torch torchvision" test
TORCH ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: run test test-kernels mutation bench bench-gpu install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

# Train the quickstart model offline (scikit-learn's digits, CPU, a few minutes) and write samples.
run: $(STAMP)
	$(BIN)/python -m lit_gen.fit --config configs/quickstart.yaml

# In parallel on every core (pytest-xdist), in a random order whose seed pytest-randomly prints.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto

# The numerics-heavy tests again under ATen's plain kernels (other vectorisation, other rounding): a test that
# passes only by one machine's rounding fails here.
test-kernels: $(STAMP)
	ATEN_CPU_CAPABILITY=default $(BIN)/python -m pytest -q -n auto tests/diffusion tests/nn tests/metrics tests/test_old_checkpoints.py

# Mutation testing of the numeric core (bench/mutation.py; hours on 2 cores, not part of CI).
MUTATION_STAMP := $(VENV)/.mutation-installed
$(MUTATION_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[mutation]"
	touch $(MUTATION_STAMP)

mutation: $(MUTATION_STAMP)
	$(BIN)/python -m bench.mutation

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	touch $(BENCH_STAMP)

# Every record in bench/results/ (quick settings, one benchmark at a time), then bench/README.md's tables.
bench: $(BENCH_STAMP)
	$(BIN)/python -m bench.run_all

# The GPU record (bench/gpu.sh, under 8 minutes); without a GPU it says so and exits 0.
bench-gpu: $(STAMP)
	PYTHON=$(BIN)/python bench/gpu.sh

clean:
	rm -rf $(VENV) runs .pytest_cache
