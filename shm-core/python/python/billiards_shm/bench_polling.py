"""Baseline for ``billiards_shm.bench``: the seed's design, measured the same way.

    python -m billiards_shm.bench_polling --width 1920 --height 1080 --fps 30 --readers 20 \\
        --seconds 10

A Python writer publishes frames into a ``multiprocessing.shared_memory`` block (a header with
the frame number and publish time, then the pixels); N Python reader processes poll the
header every 1 ms and copy each new frame out with numpy. There is no seqlock and no wake-up:
this is the design billiards_shm replaces. Frames carry shm-bench's stamps and fill bytes, so
torn copies are counted, and the JSON line has shm-bench's fields (``mode`` is
``"polling-copy"``).

Each reader unregisters the block from ``multiprocessing.resource_tracker`` (which on Python
< 3.13 would otherwise remove it when the reader exits); the writer removes it at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import struct
import subprocess
import sys
import time
from multiprocessing import shared_memory
from typing import List, Optional

import numpy as np

from ._native import monotonic_ns, process_cpu_ns
from .bench import _fill_byte, _intact

HEADER = 64  # frame_number u64, publish_ns u64, padding


def _attach(name: str) -> shared_memory.SharedMemory:
    shm = shared_memory.SharedMemory(name=name)
    try:
        from multiprocessing import resource_tracker

        resource_tracker.unregister(shm._name, "shared_memory")  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - best effort, as the seed did
        pass
    return shm


def _reader(args: argparse.Namespace) -> int:
    shm = _attach(args.segment)
    frame_len = args.width * args.height * 3
    header = np.ndarray((2,), dtype=np.uint64, buffer=shm.buf[:16])
    pixels = np.ndarray((frame_len,), dtype=np.uint8, buffer=shm.buf[HEADER : HEADER + frame_len])
    print("ready", flush=True)
    t0, t1 = (int(p) for p in sys.stdin.readline().split())
    latencies: List[int] = []
    received = torn = max_frame = 0
    last = 0
    cpu0: Optional[int] = None
    cpu1: Optional[int] = None
    while True:
        now = monotonic_ns()
        if now >= t0 and cpu0 is None:
            cpu0 = process_cpu_ns()
        if now >= t1 and cpu1 is None:
            cpu1 = process_cpu_ns()
        if now >= t1 + 300_000_000:
            break
        n = int(header[0])
        if n == last:
            time.sleep(0.001)
            continue
        publish_ns = int(header[1])
        frame = pixels.copy()
        lat = monotonic_ns() - publish_ns
        last = n
        max_frame = max(max_frame, n)
        if not _intact(frame, n, True):
            torn += 1
        if t0 <= publish_ns < t1:
            received += 1
            latencies.append(lat)
    del header, pixels
    shm.close()
    window_s = (t1 - t0) / 1e9
    print(json.dumps({
        "name": args.name,
        "received": received,
        "torn": torn,
        "max_frame": max_frame,
        "cpu_pct": max(0, (cpu1 or 0) - (cpu0 or 0)) / 1e9 / window_s * 100.0,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "latencies_ns": latencies,
    }), flush=True)
    return 0


def _bench(args: argparse.Namespace) -> int:
    frame_len = args.width * args.height * 3
    name = f"bench-polling-{os.getpid()}"
    shm = shared_memory.SharedMemory(name=name, create=True, size=HEADER + frame_len)
    readers: List[subprocess.Popen] = []
    try:
        header = np.ndarray((2,), dtype=np.uint64, buffer=shm.buf[:16])
        pixels = np.ndarray((frame_len,), dtype=np.uint8,
                            buffer=shm.buf[HEADER : HEADER + frame_len])
        for i in range(args.readers):
            readers.append(subprocess.Popen(
                [sys.executable, "-m", "billiards_shm.bench_polling", "--role", "reader",
                 "--segment", name, "--width", str(args.width), "--height", str(args.height),
                 "--name", f"poll-{i}"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        for r in readers:
            if r.stdout is None or r.stdout.readline().strip() != "ready":
                raise SystemExit("a polling reader failed to start")
        t0 = monotonic_ns() + int(args.warmup * 1e9)
        t1 = t0 + int(args.seconds * 1e9)
        for r in readers:
            assert r.stdin is not None
            r.stdin.write(f"{t0} {t1}\n")
            r.stdin.flush()
        sources = [np.full(frame_len, _fill_byte(k), dtype=np.uint8) for k in range(4)]
        period = 1.0 / args.fps
        start = time.monotonic()
        published = 0
        cpu0 = cpu1 = None
        n = 0
        while True:
            n += 1
            delay = start + period * (n - 1) - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            now = monotonic_ns()
            if now >= t0 and cpu0 is None:
                cpu0 = time.thread_time_ns()
            if now >= t1:
                cpu1 = time.thread_time_ns()
                break
            src = sources[n % 4]
            stamp = np.frombuffer(struct.pack("<Q", n), dtype=np.uint8)
            src[:8] = stamp
            src[-8:] = stamp
            np.copyto(pixels, src)
            header[1] = monotonic_ns()
            header[0] = n
            if monotonic_ns() >= t0:
                published += 1
        latencies: List[int] = []
        received = torn = 0
        cpu_total = rss = 0.0
        for r in readers:
            out, _ = r.communicate(timeout=60)
            if r.returncode != 0:
                raise SystemExit(f"a polling reader failed: {r.returncode}")
            v = json.loads(out.strip().splitlines()[-1])
            received += v["received"]
            torn += v["torn"]
            cpu_total += v["cpu_pct"]
            rss = max(rss, v["peak_rss_mb"])
            latencies.extend(v["latencies_ns"])
        latencies.sort()

        def pct(p: float) -> float:
            if not latencies:
                return 0.0
            i = min(max(int(-(-p * len(latencies) // 1)), 1), len(latencies)) - 1
            return latencies[i] / 1000.0

        expected = published * args.readers
        print(json.dumps({
            "mode": "polling-copy",
            "segment": name,
            "width": args.width,
            "height": args.height,
            "fps": args.fps,
            "readers": args.readers,
            "seconds": args.seconds,
            "slots": 1,
            "segment_bytes": HEADER + frame_len,
            "frame_bytes": frame_len,
            "frames_published": published,
            "frames_received": received,
            "latency_us": {"p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99), "max": pct(1.0)},
            "drop_pct": 0.0 if expected == 0 else max(0, expected - received) / expected * 100.0,
            "torn_reads": torn,
            "writer_cpu_pct": ((cpu1 or 0) - (cpu0 or 0)) / 1e9 / ((t1 - t0) / 1e9) * 100.0,
            "readers_cpu_pct_total": cpu_total,
            "peak_rss_mb_max": rss,
        }, sort_keys=True))
        return 0
    finally:
        for r in readers:
            if r.poll() is None:
                r.kill()
            r.wait()
        header = pixels = None  # release the exported buffers so close() succeeds
        try:
            shm.close()
        except BufferError:
            pass
        shm.unlink()


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m billiards_shm.bench_polling",
        description="Baseline: multiprocessing.shared_memory readers polling every 1 ms.",
    )
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--readers", type=int, default=1)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--role", choices=["bench", "reader"], default="bench", help=argparse.SUPPRESS)
    p.add_argument("--segment", default="", help=argparse.SUPPRESS)
    p.add_argument("--name", default="poll", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    return _reader(args) if args.role == "reader" else _bench(args)


if __name__ == "__main__":
    sys.exit(main())
