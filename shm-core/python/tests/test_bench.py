"""The benchmarks print shm-bench's JSON line: same keys, real measurements."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import binary

SMALL = ["--width", "64", "--height", "48", "--fps", "60", "--seconds", "1", "--warmup", "0.3"]


def run_json(args, timeout=180):
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("mode", ["copy", "zero-copy"])
def test_python_bench_prints_shm_bench_json_line(mode):
    shm_bench = str(binary("shm-bench"))
    rust = run_json([shm_bench, *SMALL, "--readers", "1", "--mode", mode])
    py = run_json([sys.executable, "-m", "billiards_shm.bench", "--shm-bench", shm_bench,
                   *SMALL, "--readers", "2", "--mode", mode])
    assert set(py) == set(rust)
    assert py["mode"] == mode and py["readers"] == 2
    assert py["torn_reads"] == 0
    assert py["frames_published"] > 0
    assert py["frames_received"] > 0
    assert py["latency_us"]["p50"] > 0


def test_polling_baseline_prints_the_same_fields():
    shm_bench = str(binary("shm-bench"))
    rust = run_json([shm_bench, *SMALL, "--readers", "1", "--mode", "copy"])
    poll = run_json([sys.executable, "-m", "billiards_shm.bench_polling", *SMALL,
                     "--readers", "2"])
    assert set(poll) == set(rust)
    assert poll["mode"] == "polling-copy" and poll["frames_received"] > 0


@pytest.mark.parametrize("cache", [False, True])
def test_the_bench_checker_sees_a_torn_frame(cache):
    from billiards_shm.bench import _Checker, _fill_byte

    n = 41
    frame = np.full((6, 10, 3), _fill_byte(n), dtype=np.uint8)
    flat = frame.reshape(-1)
    flat[:8] = np.frombuffer(n.to_bytes(8, "little"), dtype=np.uint8)
    flat[-8:] = np.frombuffer(n.to_bytes(8, "little"), dtype=np.uint8)
    check = _Checker(pattern=True, cache=cache)
    assert check.intact(frame, n)
    assert not check.intact(frame, n + 1), "a stamp of another frame"
    flat[-8:] = np.frombuffer((n + 4).to_bytes(8, "little"), dtype=np.uint8)
    assert not check.intact(frame, n), "the end stamp of a newer frame"
    flat[-8:] = np.frombuffer(n.to_bytes(8, "little"), dtype=np.uint8)
    flat[flat.shape[0] // 2] = _fill_byte(n + 1)
    assert not check.intact(frame, n), "a fill byte of another frame in the middle"
    assert _Checker(pattern=False, cache=cache).intact(frame, n), "stamps only"
