# Quick start: `make run` (the site on its embedded defaults) and `make test` (the whole suite).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
STRIPE_EMULATOR_PORT ?= 12111
SITE_URL ?= http://127.0.0.1:$(PORT)
RUN_DIR := .run
# Directories whose strings are not the site's (vendored, generated or the Django-free emulator).
MESSAGES_IGNORE := --ignore=.venv --ignore=staticfiles --ignore=stripe_emulator --ignore=bench --ignore=docs --ignore=.testdb

.PHONY: install run test test-fresh bench browser emulator migrate messages screenshots check clean

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
	@PORT=$(PORT) STRIPE_EMULATOR_PORT=$(STRIPE_EMULATOR_PORT) SITE_URL=$(SITE_URL) bash scripts/run.sh

# The test database is copied from a template migrated once per set of migrations (see billing_site/testdb.py);
# `make test-fresh` rebuilds the template from scratch.
test: install browser
	@if [ -z "$$DATABASE_URL" ]; then echo "make test: DATABASE_URL is unset, using SQLite (PostgreSQL-only tests are skipped; .ci/run uses PostgreSQL)."; fi
	@if [ -z "$$REDIS_URL" ]; then echo "make test: REDIS_URL is unset, Celery runs tasks eagerly and Redis-only tests are skipped."; fi
	@if [ -z "$$DATABASE_URL" ] && [ ! -d .testdb ]; then echo "make test: first run here: migrating the template test database once (about a minute)."; fi
	$(PY) -m pytest $(PYTEST_ARGS)

test-fresh: export TESTDB_REBUILD = 1
test-fresh: test

bench: install
	@bash scripts/bench.sh

# Regenerate the translation catalogs from the code and templates, then compile them (needs GNU gettext:
# `apt-get install gettext`). Review new and fuzzy entries in locale/*/LC_MESSAGES/django.po before committing.
messages: install
	@command -v msgfmt >/dev/null || { echo "make messages: GNU gettext is missing (apt-get install gettext)"; exit 1; }
	$(PY) manage.py makemessages -l pt_BR --no-wrap --no-obsolete $(MESSAGES_IGNORE)
	$(PY) manage.py compilemessages -l pt_BR $(MESSAGES_IGNORE)

# Screenshots of the foundation pages against a running site (`make run` in another terminal).
screenshots: install
	$(PY) scripts/screenshots.py --base-url $(SITE_URL)

# Django's deployment checks with production settings and throwaway secrets.
check: install
	DJANGO_DEBUG=false DJANGO_SECRET_KEY=check-only-$$RANDOM$$RANDOM$$RANDOM-not-a-real-secret-key-0123456789abcdef \
	  API_KEY_HMAC_SECRET=check-only STRIPE_SECRET_KEY=sk_test_check_only SITE_URL=https://billing.example.com \
	  EMAIL_URL=smtp+tls://check:only@smtp.example.com:587 METRICS_BEARER_TOKEN=check-only \
	  $(PY) manage.py check --deploy --fail-level WARNING

clean:
	rm -rf $(RUN_DIR) staticfiles db.sqlite3 .testdb
