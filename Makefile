# `make run` and `make test` set everything up on a fresh machine: a .venv with torch and lit_gen.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The torch build to install; override for another platform, e.g. make TORCH="torch torchvision" test
TORCH ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: run test bench bench-gpu install clean

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

test: $(STAMP)
	$(BIN)/python -m pytest -q

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
