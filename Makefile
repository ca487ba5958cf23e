# The two commands of the README, and a few conveniences around them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: dev test test-large lint bench clean os-packages

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Installs the gateway with the local S3 server and runs `gateway dev` on 127.0.0.1:8080.
dev: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/gateway dev

# OS packages the tests run for real (PgBouncer: a LISTEN through transaction pooling).
os-packages:
	@command -v pgbouncer >/dev/null 2>&1 || test -x /usr/sbin/pgbouncer || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer)

# Installs the test dependencies and runs the whole suite (what CI runs).
test: $(BIN)/python os-packages
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/ruff check gateway tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/pytest

# The multi-GiB cases as well.
test-large: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/pytest --large

bench: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .packgate *.egg-info
