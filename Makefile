# Interphone — two commands for a newcomer: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-pg test-faults lint typecheck check bench clean chromium translations

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

## run: the whole system on http://127.0.0.1:5000 (embedded Redis and SQLite by default)
run: $(STAMP)
	$(BIN)/interphone dev serve --port $${PORT:-5000}

## chromium: the browser tests drive Debian's chromium, and the speech tests make the
## dev phone speak through espeak-ng (both installed here when missing)
chromium:
	@{ test -x /usr/bin/chromium && command -v espeak-ng >/dev/null; } || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium espeak-ng; \
	  else echo "The tests need Debian's chromium and espeak-ng: sudo apt-get install chromium espeak-ng"; exit 1; fi; }

## test: the whole suite but the fault campaign (REDIS_URL / DATABASE_URL pick real
## servers, else embedded); the fault campaign is `make test-faults`
test: $(STAMP) chromium
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

## test-pg: the suite against the machine's PostgreSQL and Redis
test-pg: $(STAMP) chromium
	REDIS_URL=$${REDIS_URL:-redis://127.0.0.1:6379/0} \
	TEST_DATABASE_URL=$${TEST_DATABASE_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test} \
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

## test-faults: the fault campaign (tests marked `slow`) on real processes killed and
## restarted: 2 gunicorn, 2 workers, private Redis (AOF) and Sentinel, PostgreSQL
## (docs/topology.md); TEST_DATABASE_URL picks the database, else SQLite
test-faults: $(STAMP)
	$(BIN)/python -m pytest -q -m slow $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check interphone tests migrations
	$(BIN)/ruff format --check interphone tests migrations

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

## translations: refresh the English catalogue after changing a screen's text, then
## translate the new entries in interphone/web/translations/en/LC_MESSAGES/messages.po
TRANSLATIONS := interphone/web/translations
translations: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg -k _l -k N_ --no-location --sort-output -o $(TRANSLATIONS)/messages.pot .
	$(BIN)/pybabel update --no-fuzzy-matching -i $(TRANSLATIONS)/messages.pot -d $(TRANSLATIONS) -l en
	$(BIN)/pybabel compile -d $(TRANSLATIONS)

bench: $(STAMP)
	$(BIN)/interphone bench queue --json

clean:
	rm -rf $(VENV) instance .pytest_cache .mypy_cache .ruff_cache
