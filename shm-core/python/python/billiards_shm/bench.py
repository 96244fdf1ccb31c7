"""Benchmark of Python readers: ``python -m billiards_shm.bench``.

    python -m billiards_shm.bench --width 1920 --height 1080 --fps 30 --readers 20 \\
        --seconds 10 --mode copy|zero-copy

Runs shm-core's own benchmark (``shm-bench``: a Rust writer on a private segment, stamped
frames, the measurement window, the aggregation) with N Python reader processes in place of
its Rust readers, and prints the same JSON line as ``shm-bench``. The readers are this module
run with ``--role reader``; they speak shm-bench's reader protocol (the window ``T0 T1`` on
stdin, one JSON line on stdout).

``shm-bench`` is found through ``--shm-bench PATH``, ``$BILLIARDS_SHM_BENCH``, ``$PATH``, or
``target/release/shm-bench`` (then ``target/debug``) in the current directory or a parent;
build it with ``cargo build --release -p shm-core --bin shm-bench``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

from . import FrameOverwritten, VideoConsumer, _native


def _fill_byte(n: int) -> int:
    return 0x10 + (n % 4) * 0x30


def _intact(flat, n: int, pattern: bool) -> bool:
    """Stamps at both ends (and, for shm-bench's writer, its fill bytes) of frame ``n``."""
    length = flat.shape[0]
    if int.from_bytes(flat[:8].tobytes(), "little") != n:
        return False
    if int.from_bytes(flat[length - 8 :].tobytes(), "little") != n:
        return False
    if not pattern:
        return True
    want = _fill_byte(n)
    return all(int(flat[length * k // 4]) == want for k in (1, 2, 3))


_STAMP = struct.Struct("<Q")


class _Checker:
    """Checks the stamps at both ends (and, for shm-bench's writer, its fill bytes) of a
    frame. It reads the array's bytes through a flat memoryview made once per array: a
    zero-copy array is the slot itself and comes back for every frame in that slot, so
    checking a frame costs two ``unpack_from`` and three index reads, not numpy calls (which
    would be the benchmark's cost, not the package's: with 20 readers on two cores, each
    reader's per-frame work delays the others' wake-ups)."""

    def __init__(self, pattern: bool, cache: bool) -> None:
        self.pattern = pattern
        # Only slot arrays are kept (copies are new arrays every frame).
        self.cache = cache
        self.views: dict = {}

    def intact(self, arr, n: int) -> bool:
        got = self.views.get(id(arr))
        if got is None or got[0] is not arr:
            # A frame is C-contiguous (shm-bench writes packed rows); numpy makes a
            # contiguous flat copy of anything else, which still holds the frame's bytes.
            flat = memoryview(arr.reshape(-1)).cast("B")
            length = len(flat)
            got = (arr, flat, length - 8, [length * k // 4 for k in (1, 2, 3)])
            if self.cache and len(self.views) < 64:
                self.views[id(arr)] = got
        _, flat, tail, marks = got
        unpack = _STAMP.unpack_from
        if unpack(flat, 0)[0] != n or unpack(flat, tail)[0] != n:
            return False
        if not self.pattern:
            return True
        want = 0x10 + (n % 4) * 0x30  # _fill_byte(n), without a call per frame
        return flat[marks[0]] == want and flat[marks[1]] == want and flat[marks[2]] == want


def _reader(args: argparse.Namespace) -> int:
    consumer = VideoConsumer(
        args.segment, attach_timeout=10.0, name=args.name, fallback_dir=args.dir
    ).start()
    line = sys.stdin.readline()
    try:
        t0, t1 = (int(p) for p in line.split())
    except ValueError:
        print(f"bad window line {line!r}; expected \"T0 T1\"", file=sys.stderr)
        return 1
    intact = _Checker(args.check == "pattern", cache=args.mode != "copy").intact
    now_ns = _native.monotonic_ns
    cpu_ns = _native.process_cpu_ns
    # One tuple per frame (publish_ns, latency_ns, frame_number, writer_generation, intact),
    # judged after the run: the loop does as little as a lean consumer would, because with
    # many readers on few cores each reader's per-frame work delays the others' wake-ups.
    seen: List[tuple] = []
    record = seen.append
    cpu0: Optional[int] = None
    cpu1: Optional[int] = None
    end = t1 + 300_000_000
    copy = args.mode == "copy"
    view = consumer.view
    wait_frame = consumer.wait_frame
    while True:
        try:
            if copy:
                frame, meta = wait_frame(0.1)
                publish = meta["publish_ns"]
                lat = now_ns() - publish
                n = meta["frame_number"]
                ok = intact(frame, n)
            else:
                with view(0.1) as (arr, meta):
                    publish = meta["publish_ns"]
                    lat = now_ns() - publish
                    n = meta["frame_number"]
                    ok = intact(arr, n)
            record((publish, lat, n, meta["writer_generation"], ok))
        except (TimeoutError, FrameOverwritten):
            pass
        now = now_ns()
        if cpu0 is None and now >= t0:
            cpu0 = cpu_ns()
        if cpu1 is None and now >= t1:
            cpu1 = cpu_ns()
        if now >= end:
            break
    window_s = (t1 - t0) / 1e9
    cpu_pct = max(0, (cpu1 or 0) - (cpu0 or 0)) / 1e9 / window_s * 100.0
    stats = consumer.stats()
    consumer.stop()
    latencies = [lat for publish, lat, _, _, _ in seen if t0 <= publish < t1]
    out = {
        "name": args.name,
        "received": len(latencies),
        "torn": sum(1 for s in seen if not s[4]),
        "frames_read": stats["frames_read"],
        "frames_missed": stats["frames_missed"],
        "torn_retries": stats["torn_retries"],
        "max_frame": max((s[2] for s in seen), default=0),
        "generations": sorted({s[3] for s in seen}),
        "cpu_pct": cpu_pct,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "latencies_ns": latencies,
    }
    print(json.dumps(out), flush=True)
    return 0


def find_shm_bench(explicit: Optional[str] = None) -> Path:
    """The shm-bench executable (see the module doc for where it is looked for)."""
    for candidate in (explicit, os.environ.get("BILLIARDS_SHM_BENCH")):
        if candidate:
            p = Path(candidate)
            if not (p.is_file() and os.access(p, os.X_OK)):
                raise SystemExit(f"shm-bench {p} is not an executable file")
            return p
    on_path = shutil.which("shm-bench")
    if on_path:
        return Path(on_path)
    here = Path.cwd().resolve()
    for d in (here, *here.parents):
        for profile in ("release", "debug"):
            p = d / "target" / profile / "shm-bench"
            if p.is_file() and os.access(p, os.X_OK):
                return p
    raise SystemExit(
        "cannot find shm-bench (not in $BILLIARDS_SHM_BENCH, $PATH or target/release/ here or "
        "above); build it with `cargo build --release -p shm-core --bin shm-bench` in the "
        "repository, or pass --shm-bench PATH"
    )


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m billiards_shm.bench",
        description="Python reader processes against shm-bench's Rust writer; "
        "prints shm-bench's JSON line.",
    )
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--readers", type=int, default=1)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--mode", choices=["copy", "zero-copy"], default="zero-copy")
    p.add_argument("--slots", type=int, default=3)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--shm-bench", help="path of the shm-bench executable")
    # Reader role (run by shm-bench): its protocol's flags.
    p.add_argument("--role", choices=["bench", "reader"], default="bench", help=argparse.SUPPRESS)
    p.add_argument("--segment", default="", help=argparse.SUPPRESS)
    p.add_argument("--dir", default="/tmp", help=argparse.SUPPRESS)
    p.add_argument("--name", default="py-bench", help=argparse.SUPPRESS)
    p.add_argument("--check", choices=["pattern", "stamps"], default="pattern", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.role == "reader":
        return _reader(args)
    exe = find_shm_bench(args.shm_bench)
    cmd = [
        str(exe),
        "--width", str(args.width),
        "--height", str(args.height),
        "--fps", str(args.fps),
        "--readers", str(args.readers),
        "--seconds", str(args.seconds),
        "--mode", args.mode,
        "--slots", str(args.slots),
        "--warmup", str(args.warmup),
        "--",
        sys.executable, "-m", "billiards_shm.bench",
    ]  # fmt: skip
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
