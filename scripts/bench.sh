#!/usr/bin/env bash
# Runs the shm-core benchmark matrix of docs/BENCHMARKS.md and prints one JSON line per run.
# Usage: scripts/bench.sh [seconds]   (default 10 s per run)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
cargo build --release -q -p shm-core --bin shm-bench
for res in "1280 720" "1920 1080"; do
  set -- $res
  for readers in 1 10 20; do
    for mode in zero-copy copy; do
      ./target/release/shm-bench --width "$1" --height "$2" --fps 30 --readers "$readers" \
        --seconds "$seconds" --mode "$mode"
    done
  done
done
