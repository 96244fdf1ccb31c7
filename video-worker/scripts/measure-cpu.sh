#!/usr/bin/env bash
# Measures the video worker's CPU (user+system from /proc/PID/stat) over a window, for the
# synthetic source and the file source (an MJPG file of the synthetic table).
#
# usage: video-worker/scripts/measure-cpu.sh [SECONDS] [CASES]   (run from the workspace root)
#   SECONDS: window, default 30. CASES: a regex of case names, default all.
#   PROFILE=dev measures the debug build (OpenCV itself is the same system library).
# Builds the binaries first. Prints one line per case plus the worker's own final stats
# (fill = render/decode (and undistort) into the slot, publish overhead = shm-core's part).
# The undistort-* cases add [video.calibration] with the synthetic source's own lens matrix.
set -euo pipefail
SECONDS_WINDOW=${1:-30}
CASES=${2:-.}
WARMUP=3
PROFILE=${PROFILE:-release}
cargo build -q --profile "$PROFILE" -p billiards-video-worker --bin billiards-video-worker --example make_video --example write_calibration
DIR=target/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
BIN=$DIR/billiards-video-worker
MAKE=$DIR/examples/make_video
WRITE_CAL=$DIR/examples/write_calibration
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
TICK=$(getconf CLK_TCK)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

measure() { # name width height kind [path] [extra config]
  local name=$1 w=$2 h=$3 kind=$4 path=${5:-} extra=${6:-}
  [[ $name =~ $CASES ]] || return 0
  local shm="vw_measure_$$_$name"
  cat > "$TMP/$name.toml" <<CFG
[video]
shm_name = "$shm"
width = $w
height = $h
fps = 30
[video.source]
kind = "$kind"
path = "$path"
loop = true
$extra
CFG
  RUST_LOG=info "$BIN" --config "$TMP/$name.toml" 2> "$TMP/$name.log" &
  local pid=$!
  sleep "$WARMUP"
  local t0 c0 t1 c1
  t0=$(date +%s.%N); c0=$(cpu_ticks "$pid")
  sleep "$SECONDS_WINDOW"
  t1=$(date +%s.%N); c1=$(cpu_ticks "$pid")
  kill -TERM "$pid"; wait "$pid" || true
  awk -v n="$name" -v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$t1" -v hz="$TICK" \
    'BEGIN { printf "%-22s cpu %6.2f %% of one core over %.1f s\n", n, (c1-c0)/hz/(t1-t0)*100, t1-t0 }'
  grep -o 'frames=.*publish_overhead_us_per_frame=[0-9.]*' "$TMP/$name.log" | sed 's/^/    /'
}

"$MAKE" "$TMP/720.avi" 1280 720 30 20 > /dev/null
"$MAKE" "$TMP/1080.avi" 1920 1080 30 20 > /dev/null
measure synthetic-720p 1280 720 synthetic
measure synthetic-1080p 1920 1080 synthetic
measure file-mjpg-720p 1280 720 file "$TMP/720.avi"
measure file-mjpg-1080p 1920 1080 file "$TMP/1080.avi"
"$WRITE_CAL" "$TMP/cal720.yaml" 1280 720 -0.25 0.06 0 0 0 > /dev/null
"$WRITE_CAL" "$TMP/cal1080.yaml" 1920 1080 -0.25 0.06 0 0 0 > /dev/null
measure undistort-synthetic-720p 1280 720 synthetic "" "[video.calibration]
file = \"$TMP/cal720.yaml\""
measure undistort-synthetic-1080p 1920 1080 synthetic "" "[video.calibration]
file = \"$TMP/cal1080.yaml\""
measure undistort-file-mjpg-720p 1280 720 file "$TMP/720.avi" "[video.calibration]
file = \"$TMP/cal720.yaml\""
