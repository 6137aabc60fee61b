# Every target sets up .venv first (scripts/setup.sh picks the CPU or CUDA torch build).
.PHONY: setup demo test test-min lint clean

VENV := .venv
BIN := $(VENV)/bin

setup:
	@bash scripts/setup.sh

demo: setup
	$(BIN)/lingcollapse demo --out demo-out

test: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest

test-min:  # the suite at the dependency floors of pyproject.toml, in .venv-min
	bash scripts/test_min.sh

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) .venv-min demo-out .pytest_cache .ruff_cache
