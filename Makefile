# Quick start: `make run` (the site on its embedded defaults) and `make test` (the whole suite).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
STRIPE_EMULATOR_PORT ?= 12111
SITE_URL ?= http://127.0.0.1:$(PORT)
RUN_DIR := .run

.PHONY: install run test bench browser emulator migrate clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $@

install: $(VENV)/.installed

# Browser tests drive Debian's chromium; install it when missing and we may (root on Debian). Never downloads a
# browser build of its own.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing Debian's chromium for the browser tests..."; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium not found: browser tests will be skipped"; fi; }

migrate: install
	$(PY) manage.py migrate --noinput

emulator: install
	$(PY) -m stripe_emulator --port $(STRIPE_EMULATOR_PORT)

run: install
	@mkdir -p $(RUN_DIR)
	@bash scripts/run.sh

test: install browser
	@if [ -z "$$DATABASE_URL" ]; then echo "make test: DATABASE_URL is unset, using SQLite (PostgreSQL-only tests are skipped; .ci/run uses PostgreSQL)."; fi
	@if [ -z "$$REDIS_URL" ]; then echo "make test: REDIS_URL is unset, Celery runs tasks eagerly and Redis-only tests are skipped."; fi
	$(PY) -m pytest $(PYTEST_ARGS)

bench: install
	@bash scripts/bench.sh

clean:
	rm -rf $(RUN_DIR) staticfiles db.sqlite3
