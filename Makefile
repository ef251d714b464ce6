# Two entry points that work on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUN ?= runs/demo

.PHONY: demo test lint bench clean

$(BIN)/failscope: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

demo: $(BIN)/failscope  ## set up, then run the main job offline
	$(BIN)/failscope demo --out $(RUN)

test: $(BIN)/failscope  ## set up, then run the test suite
	$(BIN)/python -m pytest -n 2 --dist loadfile

lint: $(BIN)/failscope
	$(BIN)/ruff check failscope tests benchmarks
	$(BIN)/ruff format --check failscope tests benchmarks

clean:
	rm -rf $(VENV) runs build *.egg-info
