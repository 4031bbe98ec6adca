# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint typecheck pytest other-pythons bench bench-quick browser clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

## run: install, load the sample comparisons, serve site + preview + scheduler on :8000
run: $(STAMP)
	$(BIN)/newsletter db upgrade
	$(BIN)/newsletter comparisons import samples/comparisons
	$(BIN)/newsletter serve --host $(HOST) --port $(PORT)

## test: lint, type-check, the whole suite (real SQLite, PostgreSQL, SMTP, HTTP, Chromium),
## then the acceptance suite on every other supported Python found here (noxfile.py)
test: $(STAMP) browser lint pytest other-pythons

other-pythons: $(STAMP)
	$(BIN)/nox --no-color

pytest: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check newsletter tests bench
	$(BIN)/mypy

## browser: Debian's chromium for the browser tests (skipped with a reason when it cannot be installed)
browser:
	@bash scripts/ensure-chromium.sh

bench: $(STAMP)
	$(BIN)/python bench/run.py

bench-quick: $(STAMP)
	$(BIN)/python bench/run.py --quick

clean:
	rm -rf $(VENV) .nox .pytest_cache .mypy_cache .ruff_cache test-artifacts
