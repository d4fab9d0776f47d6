# critmin: two commands do all set-up on a fresh machine.
#   make demo   - create .venv if missing, install critmin, run the main job on the bundled data
#                 (priority minerals, then the coordinated plan in out/: plan.json, .pdf, .xlsx, .html)
#   make test   - create .venv if missing, install with test extras, run ruff, mypy and pytest
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
PERSPECTIVE ?= BLOC

.PHONY: demo test install install-test lint typecheck pytest bench atlas serve clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .

install-test: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'

demo: install
	$(BIN)/critmin assess --perspective $(PERSPECTIVE) --top 25
	$(BIN)/critmin plan --out out

lint: install-test
	$(BIN)/ruff check src tests benchmarks

typecheck: install-test
	$(BIN)/mypy src/critmin

pytest: install-test
	$(BIN)/python -m pytest -q

test: install-test
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy src/critmin
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python benchmarks/run.py

serve: install
	$(BIN)/critmin serve

atlas: install
	$(BIN)/critmin data build --raw data/raw

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build *.egg-info src/*.egg-info
