# smsgate: `make run` to try it, `make test` for every test, lint and type check,
# `make test-fast` for the tests that start no gateway, simulator, browser or process (seconds).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
CHROMIUM ?= /usr/bin/chromium

.PHONY: install test-deps run test test-fast lint typecheck bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "smsgate needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@

test-deps: $(VENV)/.test-installed

$(VENV)/.test-installed: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[test]'
	@if [ ! -x $(CHROMIUM) ]; then \
		echo "installing Chromium from the system packages"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium; \
	fi
	touch $@

run: install
	$(BIN)/smsgate run --demo-if-empty

lint: test-deps
	$(BIN)/ruff check smsgate handlers store tests

typecheck: test-deps
	$(BIN)/mypy

test: test-deps
	$(BIN)/ruff check smsgate handlers store tests
	$(BIN)/mypy
	$(BIN)/pytest -q -p no:cacheprovider

# Tests marked `full` (tests/conftest.py marks them by what they start) run only in `make test`.
test-fast: test-deps
	$(BIN)/ruff check smsgate handlers store tests
	$(BIN)/pytest -q -p no:cacheprovider -m "not full"

bench: install
	$(BIN)/python -m smsgate.tools.bench --out BENCHMARKS.md

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache
