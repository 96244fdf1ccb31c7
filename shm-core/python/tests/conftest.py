"""Fixtures: real Rust writers (the video worker, shm-bench's writer, the supervisor) in
temporary directories, reaped and their segments removed however a test ends.

The binaries come from the workspace's target/debug (or $BILLIARDS_BIN_DIR); build them with
`cargo build --workspace --bins` first (`make test-python` does).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import pytest

REPO = Path(__file__).resolve().parents[3]
BIN_DIR = Path(os.environ.get("BILLIARDS_BIN_DIR", REPO / "target" / "debug"))
SEGMENT_PREFIX = f"pyt{os.getpid()}-"
_counter = itertools.count()

# Generous: process tests share two cores with other builds and tests.
STARTUP_TIMEOUT = 60.0


def binary(name: str) -> Path:
    p = BIN_DIR / name
    if not p.is_file():
        pytest.fail(f"{p} is missing; build it with `cargo build --workspace --bins`")
    return p


def wait_until(cond: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def leftovers(fallback_dir: Optional[Path] = None) -> List[str]:
    """Segments of this test session still in /dev/shm (or the fallback dir)."""
    found = [f for f in os.listdir("/dev/shm") if f.startswith(SEGMENT_PREFIX)]
    if fallback_dir is not None and fallback_dir.is_dir():
        found += [f for f in os.listdir(fallback_dir) if f.startswith(SEGMENT_PREFIX)]
    return found


class Proc:
    """A child process in its own process group; killed and reaped on close()."""

    def __init__(self, args: List[str], env: Optional[Dict[str, str]] = None, **kw) -> None:
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.args = args
        self.p = subprocess.Popen(args, env=full_env, start_new_session=True, **kw)

    @property
    def pid(self) -> int:
        return self.p.pid

    def alive(self) -> bool:
        return self.p.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.p.pid, sig)

    def close(self, grace: float = 10.0) -> None:
        if self.alive():
            try:
                os.killpg(self.p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.p.wait()
        for stream in (self.p.stdin, self.p.stdout, self.p.stderr):
            if stream is not None:
                stream.close()


class Procs:
    """Every process a test starts; all reaped at teardown."""

    def __init__(self) -> None:
        self.procs: List[Proc] = []

    def start(self, args: List[str], env: Optional[Dict[str, str]] = None, **kw) -> Proc:
        p = Proc([str(a) for a in args], env, **kw)
        self.procs.append(p)
        return p

    def close(self) -> None:
        for p in reversed(self.procs):
            p.close()


@pytest.fixture
def procs(segments):
    # Depends on `segments` so that it is torn down first: writers are reaped before their
    # segments are removed.
    ps = Procs()
    yield ps
    ps.close()


@pytest.fixture
def segment_name(request) -> str:
    """A segment name unique to this test (and to this pytest process)."""
    stem = re.sub(r"[^A-Za-z0-9_]", "_", request.node.name)[:40]
    return f"{SEGMENT_PREFIX}{next(_counter)}-{stem}"


@pytest.fixture
def fallback_dir(tmp_path) -> Path:
    d = tmp_path / "shm-fallback"
    d.mkdir()
    return d


@pytest.fixture(autouse=True)
def no_segment_left(fallback_dir):
    """Every test leaves nothing in /dev/shm: its fixtures remove what the writers leave
    (a SIGKILLed writer cannot), and the assertion runs after them."""
    before = set(leftovers())
    yield
    # Fixture teardown order: this one was set up first, so it runs after procs/segments.
    left = set(leftovers(fallback_dir)) - before
    assert not left, f"segments left behind: {sorted(left)}"


@pytest.fixture
def segments(fallback_dir):
    """Names registered here are unlinked at teardown (after the processes are reaped)."""
    names: List[str] = []
    yield names
    for n in names:
        for p in (Path("/dev/shm") / n, fallback_dir / n):
            try:
                p.unlink()
            except FileNotFoundError:
                pass


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def video_worker(procs, segments, segment_name, fallback_dir, tmp_path):
    """Starts the standalone video worker on the synthetic source, frames stamped with their
    number at both ends; returns (Proc, config path) once the segment has a frame."""

    def start(width=320, height=240, fps=30, slots=3, name=None):
        name = name or segment_name
        segments.append(name)
        cfg = write_config(
            tmp_path / f"{name}.toml",
            f"""
[video]
shm_name = "{name}"
width = {width}
height = {height}
fps = {fps}
slots = {slots}
fallback_dir = "{fallback_dir}"
[video.source]
kind = "synthetic"
[vision]
enabled = false
[stream]
enabled = false
""",
        )
        log = open(tmp_path / f"{name}.video.log", "wb")
        p = procs.start(
            [binary("billiards-video-worker"), "--config", cfg],
            env={"BILLIARDS_STAMP_FRAMES": "1", "RUST_LOG": "warn"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_for_frames(name, fallback_dir, p)
        return p, cfg

    return start


def wait_for_frames(name: str, fallback_dir: Path, proc: Optional[Proc] = None) -> None:
    """Waits until the segment exists and has a frame (checked with a throw-away consumer)."""
    import billiards_shm as bs

    c = bs.VideoConsumer(name, attach_timeout=STARTUP_TIMEOUT, name="pytest-probe",
                         fallback_dir=str(fallback_dir))
    c.start()
    try:
        def ready():
            if proc is not None and not proc.alive():
                raise AssertionError(f"writer {proc.args} exited: {proc.p.returncode}")
            return c.info()["latest_frame"] > 0

        wait_until(ready, STARTUP_TIMEOUT, f"a first frame in {name}")
    finally:
        c.stop()


@pytest.fixture
def bench_writer(procs, segments, segment_name, fallback_dir):
    """Starts shm-bench's writer on a segment it creates: stamped frames, distinct fill bytes
    per frame (so a torn frame is visible), at up to thousands of frames per second."""

    def start(width=256, height=128, fps=1000, slots=2):
        segments.append(segment_name)
        p = procs.start(
            [binary("shm-bench"), "--role", "writer", "--create", "--segment", segment_name,
             "--dir", fallback_dir, "--width", width, "--height", height, "--fps", fps,
             "--slots", slots, "--seconds", 3600],
        )
        wait_for_frames(segment_name, fallback_dir, p)
        return p

    return start


def python_child(code: str, *args: str) -> List[str]:
    """The argv of a Python child process running `code` (sys.argv[1:] = args)."""
    return [sys.executable, "-c", code, *args]


def read_json_line(proc: Proc, timeout: float) -> dict:
    out, _ = proc.p.communicate(timeout=timeout)
    assert proc.p.returncode == 0, f"{proc.args[:3]} failed with {proc.p.returncode}"
    return json.loads(out.strip().splitlines()[-1])
