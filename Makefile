# Quick start: `make run` and `make test` on a fresh Debian 12 machine.
SHELL := /bin/bash
CARGO ?= cargo
CONFIG ?=

.PHONY: deps build build-release run test fmt-check clippy test-only bench chaos clean-shm

deps:
	@bash scripts/install-deps.sh

build: deps
	$(CARGO) build --workspace --bins

build-release: deps
	$(CARGO) build --workspace --release --bins

# Starts the supervisor in the foreground on the built-in synthetic camera; Ctrl-C stops it.
run: build-release
	@listen=$$(./target/release/billiards-supervisor check-config $(if $(CONFIG),--config $(CONFIG),) | sed -n 's/^listen = "\(.*\)"$$/\1/p'); \
	  echo "dashboard: http://$$listen/   (status: ./target/release/billiards-supervisor status; Ctrl-C stops the tree)"
	./target/release/billiards-supervisor start $(if $(CONFIG),--config $(CONFIG),)

fmt-check:
	$(CARGO) fmt --all -- --check

clippy: deps
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# The process tests start the real binaries, so build them first.
test-only: deps
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace --no-fail-fast

test: deps fmt-check clippy test-only

bench: build-release
	bash scripts/bench.sh

chaos: build-release
	./target/release/chaos $(CHAOS_ARGS)

# Removes segments left by a crashed run (names from the default config).
clean-shm:
	rm -f /dev/shm/billiards_video /dev/shm/billiards_detections
