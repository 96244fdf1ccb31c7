#!/usr/bin/env bash
# The Python reader benchmark matrix of docs/BENCHMARKS.md: for 1280x720 and 1920x1080 at
# 30 fps, with 1, 10 and 20 readers, runs in turn Rust shm-bench (copy, zero-copy), Python
# billiards_shm readers (copy, zero-copy) and the polling baseline, so every row of a block is
# measured within the same few minutes. Prints one JSON line per run and, at the end, the
# markdown table.
#
#   scripts/bench-python.sh [SECONDS]      # default 10 s per run (the machine is shared)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
cargo build --release -q -p shm-core --bin shm-bench
bash scripts/python-env.sh >/dev/null
bench=target/release/shm-bench
py=.venv/bin/python
out=target/bench-python/results-$(date +%Y%m%d-%H%M%S).jsonl
mkdir -p "$(dirname "$out")"
for res in 1280x720 1920x1080; do
  w=${res%x*} h=${res#*x}
  for n in 1 10 20; do
    common=(--width "$w" --height "$h" --fps 30 --readers "$n" --seconds "$seconds")
    for mode in copy zero-copy; do
      "$bench" "${common[@]}" --mode "$mode" | sed 's/^{/{"impl":"rust",/' | tee -a "$out"
      "$py" -m billiards_shm.bench --shm-bench "$bench" "${common[@]}" --mode "$mode" \
        | sed 's/^{/{"impl":"python",/' | tee -a "$out"
    done
    "$py" -m billiards_shm.bench_polling "${common[@]}" | sed 's/^{/{"impl":"polling",/' | tee -a "$out"
  done
done
"$py" - "$out" <<'PY'
import json, sys
print("\n| resolution | readers | readers are | mode | p50 µs | p90 µs | p99 µs | max µs | drop % | torn | readers' CPU % (total) | peak RSS MB (max reader) |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
names = {"rust": "Rust shm-bench", "python": "Python billiards_shm", "polling": "Python polling 1 ms"}
for line in open(sys.argv[1]):
    d = json.loads(line)
    l = d["latency_us"]
    print(f"| {d['width']}x{d['height']} | {d['readers']} | {names[d['impl']]} | {d['mode']} | "
          f"{l['p50']:.0f} | {l['p90']:.0f} | {l['p99']:.0f} | {l['max']:.0f} | "
          f"{d['drop_pct']:.2f} | {d['torn_reads']} | {d['readers_cpu_pct_total']:.2f} | "
          f"{d['peak_rss_mb_max']:.1f} |")
PY
echo "results: $out"
