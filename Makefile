# The two commands of the README, and a few conveniences around them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# `make dev PORT=8081`, `make cluster PORT=8090`
PORT ?=

.PHONY: dev cluster test test-large lint bench bench-metadata soak os-packages clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# nginx and PgBouncer from the OS packages, when missing (one line when nothing is to do).
os-packages:
	@scripts/os-packages.sh

# Installs the gateway with the local S3 server and runs `gateway dev` on 127.0.0.1:8080.
dev: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/gateway dev $(if $(PORT),--port $(PORT))

# PostgreSQL and S3 as in `make dev`, PgBouncer, 3 gateways and nginx in front on :8080.
cluster: os-packages $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/gateway cluster $(if $(PORT),--port $(PORT))

# Installs the test dependencies and runs the whole suite (what CI runs).
test: os-packages $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/ruff check gateway tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/pytest

# The multi-GiB cases as well.
test-large: os-packages $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/pytest --large

# The README's benchmark command (with the OCI registry, its peer, from the OS packages).
bench: $(BIN)/python
	@scripts/os-packages.sh bench
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m benchmarks --markdown bench.md --plot bench.png

# The metadata benchmark at the issue's sizes (10 million files); `make bench-metadata SCALE=0.1`.
SCALE ?= 1
bench-metadata: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/python -m benchmarks.metadata --scale $(SCALE) --markdown bench-metadata.md

# The chaos soak through the cluster (10 minutes; `make soak SOAK_ARGS="--seed 7"`).
SOAK_ARGS ?=
soak: os-packages $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m benchmarks.soak $(SOAK_ARGS)

clean:
	rm -rf $(VENV) .packgate .packgate-cluster *.egg-info
