# Every target sets up .venv first (scripts/setup.sh picks the CPU or CUDA torch build).
.PHONY: setup demo test test-min lint docs wheel clean

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

docs: setup  # the API reference from the docstrings, offline, into docs/_build/html
	$(BIN)/python -m sphinx -b html -W --keep-going -q docs docs/_build/html
	@echo "docs: docs/_build/html/index.html"

wheel: setup  # dist/lingcollapse-VERSION-py3-none-any.whl
	$(BIN)/python -m pip wheel --no-deps --no-build-isolation --wheel-dir dist .

clean:
	rm -rf $(VENV) .venv-min demo-out .pytest_cache .ruff_cache docs/_build dist build
