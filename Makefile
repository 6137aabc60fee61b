# Every target sets up .venv first (scripts/setup.sh picks the CPU or CUDA torch build).
.PHONY: setup demo test lint bench clean

VENV := .venv
BIN := $(VENV)/bin

setup:
	@bash scripts/setup.sh

demo: setup
	$(BIN)/lingcollapse demo --out demo-out

test: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) demo-out .pytest_cache .ruff_cache
