# critmin: two commands do all set-up on a fresh machine.
#   make demo   - create .venv if missing, install critmin, run the main job on the bundled data
#                 (priority minerals, then the coordinated plan in out/: plan.json, .pdf, .xlsx, .html)
#   make test   - create .venv if missing, install with test extras, run ruff, mypy and pytest
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
PERSPECTIVE ?= BLOC

.PHONY: demo test install install-test install-locked lock audit lint typecheck pytest bench atlas serve clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[web,dask]'

install-test: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'

# A deployment installs exactly the tested versions, hash-checked (requirements.lock), then critmin itself.
install-locked: $(BIN)/python
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .

# Regenerate requirements.lock from the versions the tests ran with (needs pip-tools and a package index).
lock: install-test
	$(BIN)/python -m pip install --quiet pip-tools
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^pip-tools\|^build==\|^pyproject_hooks' > constraints.txt || true
	$(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --extra test --strip-extras --no-emit-index-url --no-emit-find-links \
	  -c constraints.txt -o requirements.lock pyproject.toml
	# the test extra names critmin itself (critmin[web,dask]): drop that self-reference, a path of this machine
	sed -i '/^# WARNING: pip install will require the following package/,/^    # via critmin (pyproject.toml)$$/d' requirements.lock
	rm -f constraints.txt

# Known vulnerabilities in the locked versions (pip-audit; needs network access to the vulnerability database).
audit: $(BIN)/python
	$(BIN)/python -m pip install --quiet pip-audit
	$(BIN)/pip-audit --require-hashes --disable-pip -r requirements.lock

demo: install
	$(BIN)/critmin assess --perspective $(PERSPECTIVE) --top 25
	$(BIN)/critmin plan --out out

lint: install-test
	$(BIN)/ruff check src tests benchmarks

typecheck: install-test
	$(BIN)/mypy src/critmin

pytest: install-test
	$(BIN)/python -m pytest -q

# Two pytest workers, one per core (pytest-xdist); a test file stays on one worker, so its module fixtures are
# built once, and each worker has a PostgreSQL database of its own (tests/conftest.py). The API fuzzing runs
# after, in one process: schemathesis' generated cases are not distributed by xdist.
test: install-test
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy src/critmin
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --ignore=tests/test_web_schema.py
	$(BIN)/python -m pytest -q tests/test_web_schema.py

bench: install
	$(BIN)/python benchmarks/run.py

serve: install
	$(BIN)/critmin serve

atlas: install
	$(BIN)/critmin data build --raw data/raw

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build *.egg-info src/*.egg-info
