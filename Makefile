# Two commands: `make up` runs the platform, `make test` runs the tests (both install what they need).
SHELL := /bin/bash
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.install-stamp

.PHONY: up test install test-tools docs bench clean-state

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.11 or newer is needed (python3.11 on PATH)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

## Start PostgreSQL + broker (embedded unless DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS), the four services.
up: $(STAMP)
	$(BIN)/eldercare up

## Tools the tests drive besides Python packages (Debian packages): a real compose parser for the
## deployment test, and Chromium with a CJK font for the dashboard's browser test.
test-tools:
	@command -v docker-compose >/dev/null && test -x /usr/bin/chromium && fc-list 2>/dev/null | grep -qi wqy || { \
		echo "Installing docker-compose, chromium and fonts-wqy-microhei (Debian packages) for the tests…"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			docker-compose chromium fonts-wqy-microhei) >/dev/null; }

## The whole suite against a real PostgreSQL and a real broker (started by the suite itself).
test: $(STAMP) test-tools
	$(BIN)/python -m pytest

docs: $(STAMP)
	$(BIN)/eldercare asyncapi > docs/asyncapi.json

bench: $(STAMP)
	$(BIN)/eldercare bench backbone

clean-state:
	rm -rf .state
