# The same commands locally and in CI: `.ci/run` runs `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: install run test test-wrk test-unit bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

## Run the service with the example catalog (local Ray, bundled Redis unless REDIS_URL is set).
run: install
	$(BIN)/cart-engine serve --catalog examples/catalog.json

## Every test: unit, actor contract (both placements), integration, end to end; then the
## failure tests on a multi-node Ray cluster, in a process of their own (a process joins one
## Ray cluster only). The bench's wrk generator needs wrk, a system package: `test-wrk`.
test: install
	$(BIN)/python -m pytest -m "not reliability and not wrk"
	$(BIN)/python -m pytest -m reliability tests/reliability

## The bench's wrk generator against a real server; installs Debian's wrk when it is missing
## (as root, as CI runs).
test-wrk: install
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(BIN)/python -m pytest -m wrk tests/e2e/test_wrk_generator.py

test-unit: install
	$(BIN)/python -m pytest tests/unit

## The comparative benchmark (not part of the tests): table on stdout, JSON in bench-results/.
bench: install
	$(BIN)/python -m loadtest.bench

lint: install
	$(BIN)/python -m pip install --quiet ruff mypy
	$(BIN)/ruff check engine actors gateway snapshots loadtest tests
	$(BIN)/mypy engine

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis bench-results
