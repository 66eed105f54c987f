# hx: the two commands are `make run` and `make test`; both run `make setup` first.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMPS := .stamps

.PHONY: setup run test lint typecheck pytest contracts-test bench lock clean generate

setup: $(STAMPS)/python $(STAMPS)/npm $(STAMPS)/contracts

$(STAMPS)/python: pyproject.toml requirements.lock setup.py engine/native/_hxcore.c engine/native/hx_wire.h engine/native/_hxring.c \
		engine/native/_hxrisk.c engine/native/hx_risk.h engine/native/_hxmargin.c settlement/native/_hxtree.c \
		gateway/native/_hxreplay.c
	@mkdir -p $(STAMPS)
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -e .
	@touch $@

$(STAMPS)/npm: package.json package-lock.json contracts/scripts/setup.sh
	@mkdir -p $(STAMPS)
	bash contracts/scripts/setup.sh
	@touch $@

# The contracts `hx up` deploys on its local chain (forge, offline, from the pinned npm package).
$(STAMPS)/contracts: $(STAMPS)/npm $(shell find contracts/src -name '*.sol')
	cd contracts && ../node_modules/@foundry-rs/forge-linux-amd64/bin/forge build --offline
	@touch $@

run: setup
	$(BIN)/hx up --demo

test: setup lint typecheck contracts-test pytest

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck:
	$(BIN)/mypy engine/types engine/wire engine/ring engine/math engine/shard/ports.py

pytest:
	$(BIN)/pytest tests

contracts-test:
	bash contracts/scripts/test.sh

bench: setup
	$(BIN)/hx bench all --out var/bench

# Rewrite every file generated from the wire tables (C header, event interfaces, docs/protocol.md);
# tests fail while a committed one is stale.
generate:
	$(BIN)/python -m engine.native.codegen

# Re-pin Python dependencies after changing pyproject.toml.
lock:
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^hx' > requirements.lock

clean:
	rm -rf $(STAMPS) $(VENV) node_modules contracts/out contracts/cache var
