# llama-audit: set-up, demo and tests. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= out/example

.PHONY: setup setup-toxicity demo test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Core tool + test dependencies (CPU only; no torch).
setup: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'

# Toxicity extra. torch is pinned to the CPU build 2.13.0 in pyproject.toml (an unpinned torch
# pulls a multi-GB CUDA build); on a GPU machine install a CUDA torch first, then this.
setup-toxicity: setup
	$(BIN)/python -m pip install --quiet -e '.[test,toxicity]'

# The main job on the bundled example corpus: scan, then the paper-style report.
demo: setup
	$(BIN)/llama-audit scan examples/web_samples --out $(OUT)
	$(BIN)/llama-audit report $(OUT) --paper

# Tests (installs the toxicity extra so its engine is tested too).
test: setup-toxicity
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python bench/scan_throughput.py

clean:
	rm -rf out .pytest_cache build *.egg-info
