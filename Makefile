# nomad-holepunch
#
#   make run    build, then start the proxy on localhost:6120 in front of a
#               stand-in Nomad Task API socket (Ctrl-C stops both)
#   make test   install missing system packages, then fmt, clippy, every test
#   make build  optimised binary in target/release/nomad-holepunch
#   make bench  criterion benchmarks and the load benchmark (benches/load.sh)

SHELL := /bin/bash
CARGO ?= cargo

# apt-get needs root; use sudo when we are not.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

RUN_DIR := target/run
RUN_TOKEN := dev-workload-token

.PHONY: all build run test setup fmt lint bench clean

all: build

## setup: the system packages the build needs (cmake, for libz-ng under Pingora)
setup:
	@command -v cmake >/dev/null 2>&1 || { \
	  echo "make setup: installing cmake"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends cmake >/dev/null; \
	}

build: setup
	$(CARGO) build --release --locked --bin nomad-holepunch

## run: the proxy on 127.0.0.1:6120 against a stand-in socket in target/run.
## HOLEPUNCH_* variables from your shell pass through (HOLEPUNCH_ALLOW_NODES=true make run).
run: setup
	$(CARGO) build --locked --bin nomad-holepunch --example standin
	@mkdir -p $(RUN_DIR)
	@target/debug/examples/standin $(RUN_DIR)/api.sock $(RUN_TOKEN) 90000 & standin=$$!; \
	trap 'kill $$standin 2>/dev/null' EXIT; \
	echo "try: curl localhost:6120/v1/metrics   (Ctrl-C to stop)"; \
	HOLEPUNCH_BIND=$${HOLEPUNCH_BIND:-127.0.0.1} \
	HOLEPUNCH_SOCKET_PATH=$(CURDIR)/$(RUN_DIR)/api.sock \
	NOMAD_TOKEN=$(RUN_TOKEN) \
	target/debug/nomad-holepunch

## test: what CI runs
test: setup fmt lint
	$(CARGO) test --locked

fmt:
	$(CARGO) fmt --check

lint:
	$(CARGO) clippy --locked --all-targets -- -D warnings

## bench: criterion benches (decision, round trip), then the load benchmark
## against nginx and HAProxy (installs wrk, nginx, haproxy if missing)
bench: setup
	$(CARGO) bench --locked --bench decision --bench roundtrip
	bash benches/load.sh

clean:
	$(CARGO) clean
