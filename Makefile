# Interphone — two commands for a newcomer: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help run test test-pg test-faults lint typecheck check bench clean chromium translations
.DEFAULT_GOAL := help

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

## help: list the targets with what each does (the default: `make` alone)
help:
	@echo "make TARGET, one of:"
	@sed -n -E 's/^## ([a-z-]+): (.*)$$/\1\t\2/p' $(firstword $(MAKEFILE_LIST)) | awk -F'\t' '{ printf "  %-13s %s\n", $$1, $$2 }'

## run: the whole system on http://127.0.0.1:5000 (embedded Redis and SQLite by default)
run: $(STAMP)
	$(BIN)/interphone dev serve --port $${PORT:-5000}

## chromium: install Debian's chromium and espeak-ng with apt-get when missing (as root)
# The browser tests drive chromium; the speech tests make the dev phone speak through
# espeak-ng. Without root or apt-get, it says what to install and stops.
chromium:
	@{ test -x /usr/bin/chromium && command -v espeak-ng >/dev/null; } || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium espeak-ng; \
	  else echo "The tests need Debian's chromium and espeak-ng: sudo apt-get install chromium espeak-ng"; exit 1; fi; }

## test: the whole suite but the fault campaign; installs chromium and espeak-ng with apt-get when missing (as root)
# REDIS_URL / TEST_DATABASE_URL pick real servers, else embedded ones; the fault campaign
# is `make test-faults`.
test: $(STAMP) chromium
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

## test-pg: `make test` against the machine's PostgreSQL and Redis (default local addresses)
test-pg: $(STAMP) chromium
	REDIS_URL=$${REDIS_URL:-redis://127.0.0.1:6379/0} \
	TEST_DATABASE_URL=$${TEST_DATABASE_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test} \
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

## test-faults: the fault campaign (tests marked `slow`): real processes killed and restarted
# 2 gunicorn, 2 workers, private Redis (AOF) and Sentinel, PostgreSQL (docs/topology.md);
# TEST_DATABASE_URL picks the database, else SQLite.
test-faults: $(STAMP)
	$(BIN)/python -m pytest -q -m slow $(PYTEST_ARGS)

## lint: ruff check and ruff format --check
lint: $(STAMP)
	$(BIN)/ruff check interphone tests migrations
	$(BIN)/ruff format --check interphone tests migrations

## typecheck: mypy --strict on the package
typecheck: $(STAMP)
	$(BIN)/mypy

## check: lint, typecheck and test
check: lint typecheck test

## translations: refresh the English catalogue after changing a screen's text
# Then translate the new entries in interphone/web/translations/en/LC_MESSAGES/messages.po.
TRANSLATIONS := interphone/web/translations
translations: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg -k _l -k N_ --no-location --sort-output -o $(TRANSLATIONS)/messages.pot .
	$(BIN)/pybabel update --no-fuzzy-matching -i $(TRANSLATIONS)/messages.pot -d $(TRANSLATIONS) -l en
	$(BIN)/pybabel compile -d $(TRANSLATIONS)

## bench: the queue benchmark as JSON (the others: docs/performance.md)
bench: $(STAMP)
	$(BIN)/interphone bench queue --json

## clean: remove the virtualenv, the instance folder (embedded Redis, SQLite) and caches
clean:
	rm -rf $(VENV) instance .pytest_cache .mypy_cache .ruff_cache
