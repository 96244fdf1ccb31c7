#!/usr/bin/env bash
# Runs the property-based fuzz targets for a fixed time each and prints how many cases ran.
# Usage: scripts/fuzz.sh [seconds-per-target]   (default 300)
#  - shm-core attach_fuzz: segment attach and header/slot-metadata validation
#  - supervisor control_fuzz: control-socket framing and request decoding
#  - stream-worker http_fuzz: malformed request heads and query strings against the real server
# Every run draws new random seeds; a failure stops the script with the failing case.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-300}
cases=5000
cargo test --release -q -p shm-core --test attach_fuzz --no-run
cargo test --release -q -p billiards-supervisor --test control_fuzz --no-run
cargo test --release -q -p billiards-stream-worker --test http_fuzz --no-run
fuzz() { # package test properties
  local start runs=0
  start=$(date +%s)
  while [ $(( $(date +%s) - start )) -lt "$secs" ]; do
    PROPTEST_CASES=$cases cargo test --release -q -p "$1" --test "$2" >/dev/null 2>&1 \
      || { echo "$2: FAILED on run $((runs + 1)); rerun: PROPTEST_CASES=$cases cargo test --release -p $1 --test $2"; exit 1; }
    runs=$((runs + 1))
  done
  echo "$2: $runs runs x $cases cases for each of $3 properties ($(( runs * cases * $3 )) cases) in $(( $(date +%s) - start )) s, 0 failures"
}
fuzz shm-core attach_fuzz 3
fuzz billiards-supervisor control_fuzz 4
fuzz billiards-stream-worker http_fuzz 2
