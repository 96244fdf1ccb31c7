"""billiards_shm against real Rust writers: the video worker, shm-bench's writer, the
supervisor. Every process is reaped and every segment removed by the fixtures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

import numpy as np
import pytest

import billiards_shm as bs
from billiards_shm.bench import _intact
from conftest import (
    STARTUP_TIMEOUT,
    binary,
    python_child,
    read_json_line,
    wait_until,
    write_config,
)

META_KEYS = {"frame_number", "capture_ns", "publish_ns", "width", "height", "writer_generation"}


def stamp(flat: np.ndarray, end: bool) -> int:
    part = flat[-8:] if end else flat[:8]
    return int.from_bytes(part.tobytes(), "little")


def consumer(seg, fallback_dir, **kw) -> bs.VideoConsumer:
    return bs.VideoConsumer(seg, attach_timeout=kw.pop("attach_timeout", 10.0),
                            fallback_dir=str(fallback_dir), **kw)


def test_read_cycle(video_worker, segment_name, fallback_dir):
    video_worker(width=320, height=240)
    c = consumer(segment_name, fallback_dir, name="cycle").start()
    assert c.started
    frame, meta = c.wait_frame(timeout=5.0)
    assert set(meta) == META_KEYS
    assert frame.shape == (240, 320, 3) and frame.dtype == np.uint8
    assert frame.flags.writeable, "a copy belongs to the caller"
    assert (meta["width"], meta["height"]) == (320, 240)
    n = meta["frame_number"]
    flat = frame.reshape(-1)
    assert stamp(flat, False) == n and stamp(flat, True) == n
    # Comparable with time.monotonic_ns(): published a moment ago.
    age = time.monotonic_ns() - meta["publish_ns"]
    assert 0 <= age < 5e9
    assert meta["capture_ns"] <= meta["publish_ns"]
    # The next frames come in order, each once.
    numbers = [n]
    for _ in range(5):
        f, m = c.wait_frame(timeout=5.0)
        assert m["frame_number"] > numbers[-1]
        assert stamp(f.reshape(-1), False) == m["frame_number"]
        numbers.append(m["frame_number"])
    got = None
    deadline = time.monotonic() + 5
    while got is None and time.monotonic() < deadline:
        got = c.get_frame()
        if got is None:
            time.sleep(0.005)
    assert got is not None and got.shape == (240, 320, 3)
    s = c.stats()
    assert {"frames_read", "frames_missed", "torn_retries"} <= set(s)
    assert s["frames_read"] == len(numbers) + 1
    info = c.info()
    assert info["name"] == segment_name and info["writer_alive"]
    c.stop()
    assert not c.started
    with pytest.raises(RuntimeError, match="start"):
        c.get_frame()


def test_attach_timeout_names_the_segment(segment_name, fallback_dir):
    c = consumer(segment_name, fallback_dir, attach_timeout=0.5)
    t = time.monotonic()
    with pytest.raises(bs.VideoModuleNotAvailableError) as e:
        c.start()
    waited = time.monotonic() - t
    assert waited >= 0.45
    msg = str(e.value)
    assert segment_name in msg and "not found after 0.5 s" in msg
    assert "billiards-supervisor start" in msg
    assert isinstance(e.value, bs.ShmError)
    d = bs.DetectionsConsumer(segment_name, attach_timeout=0.1, fallback_dir=str(fallback_dir))
    with pytest.raises(bs.VideoModuleNotAvailableError, match="vision worker not available"):
        d.start()


def test_bad_arguments_are_clear_errors(segment_name, fallback_dir, tmp_path):
    with pytest.raises(ValueError, match="may use only letters"):
        bs.VideoConsumer("no/slash")
    c = consumer(segment_name, fallback_dir)
    with pytest.raises(RuntimeError, match="call start"):
        c.wait_frame(0.1)
    bad = write_config(tmp_path / "bad.toml", "[video]\nshm_nam = 'x'\n")
    with pytest.raises(bs.ConfigError, match="shm_nam"):
        bs.VideoConsumer.from_config(str(bad))


def test_no_torn_frame_under_a_writer_hammering_one_slot(bench_writer, segment_name, fallback_dir):
    # Two slots at 1000 fps: each slot is rewritten every 2 ms, while frames are copied and
    # looked at in place.
    bench_writer(width=256, height=128, fps=1000, slots=2)
    c = consumer(segment_name, fallback_dir, name="hammer").start()
    copies = views = overwritten = torn = attempts = 0
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        attempts += 1
        f, m = c.wait_frame(timeout=5.0)
        copies += 1
        if not _intact(f.reshape(-1), m["frame_number"], True):
            torn += 1
        try:
            with c.view(timeout=5.0) as (arr, m):
                ok = _intact(arr.reshape(-1), m["frame_number"], True)
                if attempts % 10 == 0:
                    time.sleep(0.005)  # outlive the slot: must end in FrameOverwritten
            views += 1
            if not ok:
                torn += 1
        except bs.FrameOverwritten:
            overwritten += 1
    assert torn == 0, f"{torn} torn frames delivered ({copies} copies, {views} views)"
    assert copies > 50 and views > 20, (copies, views)
    assert overwritten > 0, "the slow views should have been lapped"
    assert c.stats()["torn_retries"] >= overwritten


def test_reader_keeps_reading_across_a_writer_restart(procs, segments, segment_name,
                                                      fallback_dir, tmp_path):
    """The supervisor restarts a SIGKILLed video worker on the same segment; the Python reader
    stays attached, keeps reading, and shows in `status`."""
    sock = tmp_path / "sup.sock"
    segments.append(segment_name)
    cfg = write_config(tmp_path / "sup.toml", f"""
[video]
shm_name = "{segment_name}"
width = 320
height = 240
fps = 30
fallback_dir = "{fallback_dir}"
[vision]
enabled = false
[stream]
enabled = false
[supervisor]
control_socket = "{sock}"
worker_dir = "{binary('billiards-video-worker').parent}"
restart_backoff_initial_ms = 100
""")
    sup_bin = binary("billiards-supervisor")
    log = open(tmp_path / "sup.log", "wb")
    sup = procs.start([sup_bin, "start", "--config", cfg],
                      env={"BILLIARDS_STAMP_FRAMES": "1", "RUST_LOG": "warn"},
                      stdout=log, stderr=subprocess.STDOUT)
    log.close()

    def status():
        r = subprocess.run([str(sup_bin), "status", "--json", "--config", str(cfg)],
                           capture_output=True, timeout=30)
        return json.loads(r.stdout) if r.returncode == 0 else None

    def video_pid():
        s = status()
        if not s:
            return None
        w = [w for w in s["workers"] if w["name"] == "video"][0]
        return w["pid"] if w["state"] == "running" else None

    first_pid = wait_until(video_pid, STARTUP_TIMEOUT, "a running video worker")
    c = bs.VideoConsumer.from_config(str(cfg), name="restart-test")
    assert c.shm_name == segment_name
    c.start()
    f, m = c.wait_frame(timeout=STARTUP_TIMEOUT)
    gen0 = m["writer_generation"]
    wait_until(lambda: (status() or {}).get("supervisor", {}).get("shm", {}).get("readers", 0) >= 1,
               30, "status to count the Python reader")

    os.kill(first_pid, signal.SIGKILL)
    seen_new_generation = False
    last = m["frame_number"]
    deadline = time.monotonic() + STARTUP_TIMEOUT
    frames_after = 0
    while time.monotonic() < deadline and frames_after < 10:
        try:
            f, m = c.wait_frame(timeout=1.0)
        except TimeoutError:
            continue  # the worker is being restarted
        assert m["frame_number"] > last, "frame numbers continue across writers"
        last = m["frame_number"]
        flat = f.reshape(-1)
        assert stamp(flat, False) == last and stamp(flat, True) == last
        if m["writer_generation"] > gen0:
            seen_new_generation = True
            frames_after += 1
    assert seen_new_generation and frames_after >= 10, "frames from the restarted worker"
    assert video_pid() not in (None, first_pid)
    assert c.started

    r = subprocess.run([str(sup_bin), "stop", "--config", str(cfg)], capture_output=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    sup.p.wait(60)
    # The reader still maps the (now unlinked) segment; stopping it is harmless.
    c.stop()


def test_view_is_read_only_and_outlives_stop(video_worker, segment_name, fallback_dir):
    video_worker(width=320, height=240)
    c = consumer(segment_name, fallback_dir, name="view").start()
    with c.view(timeout=5.0) as (arr, meta):
        assert set(meta) == META_KEYS
        assert arr.shape == (240, 320, 3) and arr.dtype == np.uint8
        assert not arr.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            arr[0, 0, 0] = 1
        with pytest.raises(ValueError):
            arr.setflags(write=True)
        assert stamp(arr.reshape(-1), False) == meta["frame_number"]
        inside = arr.copy()
    # The array's base owns the mapping: after the block and after stop() it is still memory
    # that can be read (its bytes may be a later frame by now).
    c.stop()
    del c
    import gc

    gc.collect()
    assert arr.shape == inside.shape
    assert int(arr.sum(dtype=np.uint64)) >= 0


def test_frame_overwritten_when_the_block_outlives_the_slot(video_worker, segment_name,
                                                             fallback_dir):
    video_worker(width=320, height=240, fps=30, slots=2)
    c = consumer(segment_name, fallback_dir, name="lapped").start()
    missed = c.stats()["frames_missed"]
    with pytest.raises(bs.FrameOverwritten, match="overwritten"):
        with c.view(timeout=5.0) as (arr, meta):
            n = meta["frame_number"]
            # Two slots at 30 fps: the slot is rewritten ~67 ms later.
            wait_until(lambda: c.info()["latest_frame"] >= n + 3, 30, "the writer to lap")
    assert c.stats()["frames_missed"] > missed
    # The next view is a newer frame and intact.
    with c.view(timeout=5.0) as (arr, meta):
        assert meta["frame_number"] > n
        assert stamp(arr.reshape(-1), True) == meta["frame_number"]


def test_a_views_own_error_wins_and_a_view_is_entered_once(video_worker, segment_name,
                                                             fallback_dir):
    video_worker(width=320, height=240, fps=30, slots=2)
    c = consumer(segment_name, fallback_dir, name="raising").start()
    # The block's own exception comes out, not FrameOverwritten, even if the slot was lapped.
    with pytest.raises(KeyError, match="model failed"):
        with c.view(timeout=5.0) as (arr, meta):
            n = meta["frame_number"]
            wait_until(lambda: c.info()["latest_frame"] >= n + 3, 30, "the writer to lap")
            raise KeyError("model failed")
    v = c.view(timeout=5.0)
    with v as (arr, meta):
        assert v.meta is meta
        with pytest.raises(RuntimeError, match="already open"):
            v.__enter__()
    # Leaving twice is harmless.
    assert v.__exit__(None, None, None) is False
    # With no wait, a view right after the newest frame was read times out, naming the
    # segment (a frame may arrive in between: try again then).
    for _ in range(50):
        try:
            with c.view(timeout=0.0):
                pass
        except TimeoutError as e:
            assert segment_name in str(e)
            break
    else:
        pytest.fail("view(timeout=0) never timed out at 30 fps")


def test_waits_release_the_gil(video_worker, segment_name, fallback_dir):
    writer, _ = video_worker(width=320, height=240)
    c = consumer(segment_name, fallback_dir, name="gil").start()
    c.wait_frame(timeout=5.0)
    writer.signal(signal.SIGSTOP)
    try:
        time.sleep(0.1)
        while c.get_frame() is not None:  # drain: nothing new can come now
            pass
        assert c.get_frame() is None
        result = {}

        def waiter():
            t = time.monotonic()
            try:
                c.wait_frame(timeout=1.5)
                result["error"] = "a frame came from a stopped writer"
            except TimeoutError:
                result["waited"] = time.monotonic() - t

        th = threading.Thread(target=waiter)
        th.start()
        count = 0
        while th.is_alive():
            count += 1  # pure-Python work: runs only while the waiter does not hold the GIL
        th.join()
        assert "error" not in result
        assert result["waited"] >= 1.4
        assert count > 10_000, f"the main thread made only {count} steps during the wait"
    finally:
        writer.signal(signal.SIGCONT)
    f, m = c.wait_frame(timeout=10.0)
    assert f.shape == (240, 320, 3)


def test_a_view_and_a_waiting_thread_share_one_consumer(video_worker, segment_name,
                                                        fallback_dir):
    # A view is released while another thread of the process may sleep on the same reader
    # (holding its lock): neither may stall the other for good.
    video_worker(width=320, height=240, fps=60)
    c = consumer(segment_name, fallback_dir, name="shared").start()
    counts = {"thread": 0}

    def other():
        for _ in range(40):
            c.wait_frame(timeout=10.0)
            counts["thread"] += 1

    th = threading.Thread(target=other)
    th.start()
    views = 0
    for _ in range(40):
        try:
            with c.view(timeout=10.0) as (arr, meta):
                assert arr.shape == (240, 320, 3)
        except bs.FrameOverwritten:
            pass  # the other thread's wait outlasted the slot: still a release, not a hang
        views += 1
    th.join(timeout=60.0)
    assert not th.is_alive(), "the waiting thread never finished"
    assert counts["thread"] == 40 and views == 40


def test_view_takes_its_timeout_as_documented(video_worker, segment_name, fallback_dir):
    video_worker(width=320, height=240)
    c = consumer(segment_name, fallback_dir, name="timeouts").start()
    for v in (c.view(), c.view(None), c.view(5), c.view(timeout=5.0), c.view(float("inf"))):
        with v as (arr, meta):
            assert arr.shape == (240, 320, 3) and meta["width"] == 320
    with pytest.raises(ValueError, match="timeout must be"):
        c.view(-1.0)

    class Logged(bs.VideoConsumer):
        def view(self, timeout=1.0):
            self.calls = getattr(self, "calls", 0) + 1
            return super().view(timeout)

    s = Logged(segment_name, attach_timeout=10.0, fallback_dir=str(fallback_dir)).start()
    with s.view(5.0) as (arr, meta):
        pass
    assert s.calls == 1, "a subclass's own view() must be the one called"
    s.stop()


READER_CHILD = r"""
import json, sys
import billiards_shm as bs
name, fallback, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
c = bs.VideoConsumer(name, attach_timeout=30, fallback_dir=fallback).start()
torn = 0
last = 0
for _ in range(count):
    f, m = c.wait_frame(timeout=30)
    flat = f.reshape(-1)
    n = m["frame_number"]
    if int.from_bytes(flat[:8].tobytes(), "little") != n or \
       int.from_bytes(flat[-8:].tobytes(), "little") != n or n <= last:
        torn += 1
    last = n
print(json.dumps({"frames": count, "torn": torn, "name": c.name,
                  "resource_tracker": "multiprocessing.resource_tracker" in sys.modules}))
"""


def test_ten_python_reader_processes(video_worker, procs, segment_name, fallback_dir):
    video_worker(width=320, height=240, fps=30)
    kids = [
        procs.start(python_child(READER_CHILD, segment_name, str(fallback_dir), "30"),
                    stdout=subprocess.PIPE)
        for _ in range(10)
    ]
    results = [read_json_line(k, timeout=120) for k in kids]
    for r in results:
        assert r["frames"] == 30 and r["torn"] == 0, r
        assert r["name"] == "python", "python -c scripts are named python"
        assert not r["resource_tracker"], "multiprocessing.resource_tracker must not be involved"


HOLDING_CHILD = r"""
import sys, time
import billiards_shm as bs
c = bs.VideoConsumer(sys.argv[1], attach_timeout=30, fallback_dir=sys.argv[2],
                     name="doomed").start()
c.wait_frame(timeout=30)
print("attached", flush=True)
while True:
    try:
        with c.view(timeout=1.0) as (arr, meta):
            time.sleep(0.01)
    except (TimeoutError, bs.FrameOverwritten):
        pass
"""


def test_a_sigkilled_reader_leaves_the_segment_intact(video_worker, procs, segment_name,
                                                      fallback_dir):
    writer, _ = video_worker(width=320, height=240)
    kid = procs.start(python_child(HOLDING_CHILD, segment_name, str(fallback_dir)),
                      stdout=subprocess.PIPE)
    assert kid.p.stdout.readline().strip() == b"attached"
    time.sleep(0.3)
    kid.signal(signal.SIGKILL)
    kid.p.wait(30)
    time.sleep(0.5)
    assert os.path.exists(f"/dev/shm/{segment_name}"), "the segment must survive its reader"
    assert writer.alive(), "the writer must not notice a dead reader"
    c = consumer(segment_name, fallback_dir, name="after").start()
    for _ in range(5):
        f, m = c.wait_frame(timeout=5.0)
        assert stamp(f.reshape(-1), True) == m["frame_number"]
    c.stop()


def test_gc_stops_the_consumer_and_the_reader_entry_is_reused(video_worker, segment_name,
                                                              fallback_dir):
    video_worker(width=64, height=48)
    # The reader table has 64 entries: 100 consumers dropped without stop() would exhaust it
    # unless garbage collection frees their entries.
    for i in range(100):
        c = consumer(segment_name, fallback_dir, name=f"gc{i}").start()
        del c
    c = consumer(segment_name, fallback_dir, name="last").start()
    c.wait_frame(timeout=5.0)
    c.stop()


def test_detections_consumer_reads_the_vision_workers_json(procs, segments, segment_name,
                                                          fallback_dir, tmp_path):
    det_name = f"{segment_name}-det"
    segments.extend([segment_name, det_name])
    cfg = write_config(tmp_path / "vision.toml", f"""
[video]
shm_name = "{segment_name}"
width = 320
height = 240
fps = 30
fallback_dir = "{fallback_dir}"
[vision]
detections_shm_name = "{det_name}"
""")
    env = {"RUST_LOG": "warn"}
    video = procs.start([binary("billiards-video-worker"), "--config", cfg], env=env)
    from conftest import wait_for_frames

    wait_for_frames(segment_name, fallback_dir, video)
    procs.start([binary("billiards-vision-worker"), "--config", cfg], env=env)
    d = bs.DetectionsConsumer.from_config(str(cfg), name="det-test")
    assert d.shm_name == det_name
    d.attach_timeout = STARTUP_TIMEOUT
    assert d.start() is d
    first = d.wait(timeout=STARTUP_TIMEOUT)
    assert {"frame_number", "capture_ts_ns", "processed_ts_ns", "table", "balls"} <= set(first)
    second = d.wait(timeout=STARTUP_TIMEOUT)
    assert second["frame_number"] > first["frame_number"]
    assert d.stats()["frames_read"] == 2
    d.stop()
