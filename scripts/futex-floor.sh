#!/usr/bin/env bash
# Builds scripts/futex-floor.c and runs it: the cost of the bare futex wake-up of N reader
# processes on this machine, the floor under shm-bench's zero-copy figures.
# Usage: scripts/futex-floor.sh [readers] [fps] [seconds]   (defaults: 20 30 10)
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target
cc -O2 -Wall -Wextra -o target/futex-floor scripts/futex-floor.c
exec ./target/futex-floor "$@"
