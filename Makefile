# Quick start: `make run` and `make test` on a fresh Debian 12 machine.
SHELL := /bin/bash
CARGO ?= cargo
CONFIG ?=

.PHONY: deps build build-release run test fmt-check clippy test-only test-python python-env bench chaos clean-shm

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
	$(MAKE) --no-print-directory test-python

# The virtualenv .venv/ with billiards_shm built into it (shm-core/python).
python-env: deps
	bash scripts/python-env.sh

# billiards_shm's pytest suite against the real Rust writers in target/debug.
test-python: python-env
	$(CARGO) build --workspace --bins
	.venv/bin/python -m pytest -q shm-core/python/tests

test: deps fmt-check clippy test-only

bench: build-release
	bash scripts/bench.sh

chaos: build-release
	./target/release/chaos $(CHAOS_ARGS)

# Removes segments left by a crashed run (names from the default config).
clean-shm:
	rm -f /dev/shm/billiards_video /dev/shm/billiards_detections
