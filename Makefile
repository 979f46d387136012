# nomad-holepunch
#
#   make run    build, then start the proxy on localhost:6120 in front of a
#               stand-in Nomad Task API socket (Ctrl-C stops both)
#   make test   install what is missing (setup, setup-test, setup-dist), then
#               fmt, clippy, cargo deny, every test, the release build, and
#               make dist checked (packaging/check_dist.py)
#   make build  optimised binary in target/release/nomad-holepunch, with its
#               dependency list embedded (cargo auditable)
#   make dist   release artifacts for this platform in dist/: archive, Debian
#               package, bill of materials, SHA256SUMS
#   make bench  criterion benchmarks, then the load, storm, instruction and
#               system-call benchmarks (benches/*.sh)
#   make fuzz   every fuzz target for FUZZ_SECONDS each (nightly, cargo-fuzz)
#   make mutants  mutation testing of the pure core (cargo-mutants; about an
#               hour on two quiet cores)

SHELL := /bin/bash
CARGO ?= cargo

# apt-get needs root; use sudo when we are not.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

RUN_DIR := target/run
# The Python venv of the client tests (python-nomad, python-hcl2, PyYAML).
PY_VENV := target/py
RUN_TOKEN := dev-workload-token

# The tools the build and the release checks need, pinned, built from
# crates.io into a directory of their own (not ~/.cargo/bin, where they
# would replace whatever version you have), kept between clones.
TOOLS ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/nomad-holepunch-tools
export PATH := $(TOOLS)/bin:$(PATH)
CARGO_AUDITABLE_VERSION := 0.7.7
CARGO_DENY_VERSION := 0.20.2
RUST_AUDIT_INFO_VERSION := 0.5.4
# The platform `make build` builds for, and the one dist and deny look at.
HOST := $(shell rustc -vV 2>/dev/null | sed -n 's/^host: //p')

.PHONY: all build run test setup setup-build setup-test setup-dist container-build fmt lint deny dist check-dist bench fuzz setup-fuzz mutants setup-mutants clean

all: build

APT_INSTALL = $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get

# $(call cargo-tool,CRATE,VERSION): `cargo install` CRATE at exactly VERSION
# into $(TOOLS), unless it is there already (checked without the network).
# Built without LTO and with parallel codegen: a tool's own speed does not
# matter here, its build time does (cargo-deny: about 1m40s on 2 cores
# instead of several minutes).
define cargo-tool
	@$(CARGO) install --list --root "$(TOOLS)" 2>/dev/null | grep -qxF "$(1) v$(2):" || { \
	  echo "make: installing $(1) $(2) into $(TOOLS)"; \
	  env -u CARGO_TARGET_DIR CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
	    $(CARGO) install --quiet --locked --root "$(TOOLS)" --version "=$(2)" $(1); \
	}
endef

## setup: what every build needs: cmake (libz-ng under Pingora) from apt.
setup:
	@command -v cmake >/dev/null 2>&1 || { \
	  echo "make setup: installing cmake"; \
	  $(APT_INSTALL) update -qq && \
	  $(APT_INSTALL) install -y -qq --no-install-recommends cmake >/dev/null; \
	}

## setup-build: what the release build needs besides: cargo-auditable, which
## embeds the dependency list in the binary (`make run`'s debug build does
## without it).
setup-build: setup
	$(call cargo-tool,cargo-auditable,$(CARGO_AUDITABLE_VERSION))

## setup-test: what the client tests need besides the build: Debian's
## prometheus package (prometheus, promtool; its service is not started) and
## a Python venv with tests/clients/requirements.txt from PyPI.
setup-test:
	@need=""; \
	command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || need=" prometheus"; \
	python3 -c 'import venv, ensurepip' 2>/dev/null || need="$$need python3-venv"; \
	if [ -n "$$need" ]; then \
	  echo "make setup-test: installing$$need"; \
	  $(APT_INSTALL) update -qq && \
	  $(APT_INSTALL) install -y -qq --no-install-recommends $$need >/dev/null; \
	fi
	@cmp -s tests/clients/requirements.txt $(PY_VENV)/.installed 2>/dev/null || { \
	  echo "make setup-test: creating $(PY_VENV) (tests/clients/requirements.txt)"; \
	  rm -rf $(PY_VENV) && python3 -m venv $(PY_VENV) && \
	  $(PY_VENV)/bin/pip install -q --disable-pip-version-check -r tests/clients/requirements.txt && \
	  cp tests/clients/requirements.txt $(PY_VENV)/.installed; \
	}

## setup-dist: what make dist and its checks need: cargo-deny,
## rust-audit-info (reads the list back out of the binary), and dpkg-dev
## (dpkg-shlibdeps) from apt.
setup-dist:
	@command -v dpkg-shlibdeps >/dev/null 2>&1 || { \
	  echo "make setup-dist: installing dpkg-dev"; \
	  $(APT_INSTALL) update -qq && \
	  $(APT_INSTALL) install -y -qq --no-install-recommends dpkg-dev >/dev/null; \
	}
	$(call cargo-tool,cargo-deny,$(CARGO_DENY_VERSION))
	$(call cargo-tool,rust-audit-info,$(RUST_AUDIT_INFO_VERSION))

## build: the release binary. `cargo auditable build` is `cargo build` plus
## the dependency list in a .dep-v0 section; the Containerfile runs the same.
build: setup-build
	$(CARGO) auditable build --release --locked --bin nomad-holepunch

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

## test: what CI runs. Plain `cargo test` skips the tests that need what
## setup-test installs (#[ignore = "needs ..."]); here they run too. Then the
## release build (once), make dist, and the checks of what it made.
test: setup setup-build setup-test setup-dist fmt lint deny
	HOLEPUNCH_TEST_PYTHON=$(CURDIR)/$(PY_VENV)/bin/python $(CARGO) test --locked -- --include-ignored
	@$(MAKE) --no-print-directory container-build
	@$(MAKE) --no-print-directory check-dist

## container-build: the Containerfile's build step (`make build`), then the
## release binary checks the Pingora settings the image ships.
container-build: build
	env -i NOMAD_TOKEN=check HOLEPUNCH_SOCKET_PATH=/run/api.sock \
	  target/release/nomad-holepunch --check -c conf/holepunch.yaml >/dev/null

fmt:
	$(CARGO) fmt --check

lint:
	$(CARGO) clippy --locked --all-targets -- -D warnings

## deny: licenses, duplicate crates and sources (deny.toml), offline. The
## crate graph is this platform's (cargo metadata --filter-platform): without
## it cargo would want every platform's crates, windows-sys included, which
## a Linux build never downloads. The fetch is a no-op once they are here.
deny: setup-dist
	@mkdir -p target
	$(CARGO) fetch --locked --target $(HOST)
	$(CARGO) metadata --frozen --format-version 1 --filter-platform $(HOST) >target/deny-metadata.json
	$(CARGO) deny --frozen --target $(HOST) --metadata-path target/deny-metadata.json \
	  check --deny warnings licenses bans sources

## dist: the release artifacts for this platform, in dist/ (packaging/dist.sh).
dist: build setup-dist
	bash packaging/dist.sh

## check-dist: make dist, then every check of what it made
## (packaging/check_dist.py; the venv has the CycloneDX schema validator).
check-dist: dist setup-test
	$(PY_VENV)/bin/python packaging/check_dist.py

## bench: criterion benches (decision, round trip, log redaction), the load benchmark
## against the Pingora floor, nginx and HAProxy, the scrape-storm
## benchmark, instructions per request against the floor (callgrind), and
## system calls per scrape (installs wrk, nginx, haproxy, valgrind, strace
## if missing)
bench: setup
	$(CARGO) bench --locked --bench decision --bench roundtrip --bench redaction
	bash benches/load.sh
	bash benches/storm.sh
	bash benches/instructions.sh
	bash benches/syscalls.sh

## fuzz: each fuzz target (fuzz/fuzz_targets, checks in fuzz/checks) for
## FUZZ_SECONDS (default 180) on one core, one after another, starting from
## its committed seeds, corpus and regressions; then its corpus is minimised in
## place (cargo fuzz cmin: the fewest inputs that cover its edges). A crash or a
## broken invariant stops it, the input in fuzz/artifacts/<target>/: fix
## it, and commit the input under fuzz/regressions/<target>/. FUZZ_TARGETS picks targets, FUZZ_SANITIZER
## the sanitizer (address; none runs faster). Not part of `make test`:
## `cargo test` replays the committed inputs (tests/fuzz_corpus.rs).
FUZZ_SECONDS ?= 180
FUZZ_TARGETS ?= guard_header request_target decide query config_values client_tokens watched_file jwt_exp
FUZZ_SANITIZER ?= address
CARGO_FUZZ_VERSION := 0.13.2
# Debug assertions on: an integer overflow is a finding too.
FUZZ_BUILD = --sanitizer $(FUZZ_SANITIZER) --debug-assertions
# The longest input each target is given (libFuzzer's -max_len): well past
# what each input means (a request header, a target, a file), and short
# enough to stay fast; the guard's real limit, 64 KiB, is its unit tests'.
FUZZ_LEN_guard_header := 4096
FUZZ_LEN_request_target := 512
FUZZ_LEN_decide := 1024
FUZZ_LEN_query := 1024
FUZZ_LEN_config_values := 512
FUZZ_LEN_client_tokens := 4096
FUZZ_LEN_watched_file := 4096
FUZZ_LEN_jwt_exp := 2048

## setup-fuzz: the nightly toolchain (cargo-fuzz builds with its sanitizer
## flags) and cargo-fuzz, pinned, from crates.io, into $(TOOLS) like the
## other tools.
setup-fuzz: setup
	@rustup run nightly rustc --version >/dev/null 2>&1 || { \
	  echo "make setup-fuzz: installing the nightly toolchain"; \
	  rustup toolchain install nightly --profile minimal; \
	}
	$(call cargo-tool,cargo-fuzz,$(CARGO_FUZZ_VERSION))

define fuzz_one
	@echo "make fuzz: $(1) for $(FUZZ_SECONDS) s"
	@mkdir -p fuzz/corpus/$(1) fuzz/regressions/$(1)
	$(CARGO) +nightly fuzz run $(FUZZ_BUILD) $(1) fuzz/corpus/$(1) fuzz/seeds/$(1) fuzz/regressions/$(1) -- \
	  -max_total_time=$(FUZZ_SECONDS) -max_len=$(FUZZ_LEN_$(1)) -print_final_stats=1
	$(CARGO) +nightly fuzz cmin $(FUZZ_BUILD) $(1) fuzz/corpus/$(1) -- -max_len=$(FUZZ_LEN_$(1)) -set_cover_merge=1 -use_counters=0

endef

fuzz: setup-fuzz
	$(CARGO) +nightly fuzz build $(FUZZ_BUILD)
	$(foreach t,$(FUZZ_TARGETS),$(call fuzz_one,$(t)))

## mutants: mutation testing of the pure core, src/decision/ and
## src/config/ (CONTRIBUTING.md, "Mutation testing", says how to read the
## report in target/mutants.out/). One mutant at a time, in a copy of the
## tree, against the unit tests, the properties of tests/path_rules.rs and the
## fuzz corpus replay (MUTANTS_TESTS); the integration tests would take
## hours. Its own build directory (target/mutants) outlives the run.
## MUTANTS_ARGS adds options: `MUTANTS_ARGS="-F hex_pair"` reruns the mutants
## whose names match, `MUTANTS_ARGS=--iterate` only those the last run did
## not catch (after a first pass with MUTANTS_TESTS=--lib, the same result in
## about half the time).
CARGO_MUTANTS_VERSION := 27.1.0
MUTANTS_FILES ?= src/decision/*.rs src/config/*.rs
MUTANTS_TESTS ?= --lib --test=path_rules --test=fuzz_corpus
MUTANTS_ARGS ?=

setup-mutants:
	$(call cargo-tool,cargo-mutants,$(CARGO_MUTANTS_VERSION))

# --timeout 60: a mutant that makes a decoding loop endless (`i += 3` into
# `i *= 3`) pushes a byte each turn; the tests take a few seconds. The
# build has its own, longer limit (--timeout alone would cap it too).
mutants: setup setup-mutants
	CARGO_TARGET_DIR="$(CURDIR)/target/mutants" $(CARGO) mutants -j 1 -o target \
	  --timeout 60 --build-timeout 900 \
	  $(foreach f,$(MUTANTS_FILES),-f '$(f)') \
	  $(foreach t,$(MUTANTS_TESTS),--cargo-arg=$(t)) \
	  $(MUTANTS_ARGS)

clean:
	$(CARGO) clean
	rm -rf dist
