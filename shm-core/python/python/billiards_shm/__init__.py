"""Read billiards-supervisor's frame segment and detections channel from Python.

    import billiards_shm as bs
    c = bs.VideoConsumer("billiards_video", attach_timeout=5.0).start()
    frame, meta = c.wait_frame(timeout=1.0)      # numpy uint8 (height, width, 3) BGR copy
    with c.view() as (arr, meta):                 # zero-copy, read-only, valid in the block
        ...
    c.stop()

The segments are read through the same Rust code as the product's own workers (shm-core):
waits sleep on the segment's futex with the GIL released, copies are checked by the slot's
seqlock, and a torn frame is never delivered. Python never creates, unlinks or registers a
segment with ``multiprocessing.resource_tracker``.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Dict, Optional, Tuple

import numpy as np

from . import _native
from ._native import (
    ConfigError,
    FrameOverwritten,
    FrameView,
    ShmError,
    VideoModuleNotAvailableError,
)

__all__ = [
    "VideoConsumer",
    "DetectionsConsumer",
    "FrameView",
    "ShmError",
    "VideoModuleNotAvailableError",
    "FrameOverwritten",
    "ConfigError",
    "default_reader_name",
    "monotonic_ns",
]

#: CLOCK_MONOTONIC in nanoseconds, the clock of ``meta["publish_ns"]`` and
#: ``meta["capture_ns"]`` (the same clock as :func:`time.monotonic_ns`).
monotonic_ns = _native.monotonic_ns

Meta = Dict[str, int]


def default_reader_name() -> str:
    """The name a consumer shows in the reader table by default: the script's file name."""
    arg0 = sys.argv[0] if sys.argv else ""
    base = os.path.basename(arg0)
    if not base or base in ("-c", "-m", "-"):
        return "python"
    return base


def _timeout(timeout: Optional[float]) -> float:
    return float("inf") if timeout is None else float(timeout)


class _Consumer:
    """What the two consumers share: attach, stop, stats, context management."""

    _producer = "video worker"

    def __init__(
        self,
        shm_name: str,
        attach_timeout: float = 5.0,
        *,
        name: Optional[str] = None,
        fallback_dir: Optional[str] = None,
    ) -> None:
        if fallback_dir is None or fallback_dir == "":
            fallback_dir = _native.default_fallback_dir()
        self.shm_name = shm_name
        self.attach_timeout = float(attach_timeout)
        self.name = name if name is not None else default_reader_name()
        self.fallback_dir = fallback_dir
        self._reader = _native.Reader(shm_name, fallback_dir, self.name, self._producer)

    def start(self):
        """Attaches to the segment, waiting up to ``attach_timeout`` seconds for it.

        Raises :class:`VideoModuleNotAvailableError` (naming the segment) when it does not
        appear, :class:`ShmError` when it is invalid or its reader table is full. Returns the
        consumer, so ``c = VideoConsumer(...).start()`` works. Calling it again does nothing.
        """
        self._reader.attach(self.attach_timeout)
        return self

    def stop(self) -> None:
        """Detaches: frees the reader-table entry. Never removes the segment.

        Arrays handed out earlier stay valid memory (a view's memory stays mapped for as long
        as its array lives). Also happens when the consumer is garbage-collected.
        """
        self._reader.close()

    @property
    def started(self) -> bool:
        """Whether :meth:`start` succeeded and :meth:`stop` was not called."""
        return self._reader.attached

    def stats(self) -> Dict[str, int]:
        """This consumer's counters: ``frames_read``, ``frames_missed``, ``torn_retries``,
        ``latency_p50_ns``, ``latency_p99_ns`` (publish-to-read, refreshed every 0.5 s)."""
        return self._reader.stats()

    def info(self) -> Dict[str, Any]:
        """The segment: name, path, size_bytes, slots, slot_bytes, width, height, fallback,
        writer_pid, writer_alive, writer_generation, latest_frame."""
        return self._reader.info()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "started" if self.started else "stopped"
        return f"{type(self).__name__}({self.shm_name!r}, name={self.name!r}, {state})"


class VideoConsumer(_Consumer):
    """A reader of the frame segment (``video.shm_name``, default ``billiards_video``).

    ``name`` is shown in the reader table (``billiards-supervisor status``); it defaults to
    the script's file name. ``fallback_dir`` is where the segment lives when /dev/shm is not
    usable (default: ``$XDG_RUNTIME_DIR`` or ``/tmp``, as the product's ``video.fallback_dir``).
    A consumer keeps reading across a video-worker restart and never delivers a torn frame.
    """

    def __init__(
        self,
        shm_name: str = "billiards_video",
        attach_timeout: float = 5.0,
        *,
        name: Optional[str] = None,
        fallback_dir: Optional[str] = None,
    ) -> None:
        super().__init__(shm_name, attach_timeout, name=name, fallback_dir=fallback_dir)
        if type(self).view is VideoConsumer.view:
            # The hot path of a zero-copy reader: the native method itself, so each frame
            # costs no Python call frame (a freshly woken reader runs it with cold caches,
            # and with many readers on few cores each one's cost delays the others). It takes
            # the same arguments as the method below, which documents it. A subclass that
            # overrides view() keeps its own.
            self.view = self._reader.view  # type: ignore[method-assign]

    @classmethod
    def from_config(
        cls, path: Optional[str] = None, *, name: Optional[str] = None
    ) -> "VideoConsumer":
        """A consumer of the segment a billiards-supervisor configuration names.

        The file is found in the product's lookup order (``path``, else
        ``$BILLIARDS_CONFIG``, else ``./billiards.toml``, else the built-in defaults) and
        validated; ``video.shm_name``, ``video.attach_timeout_sec`` and
        ``video.fallback_dir`` are used. Raises :class:`ConfigError` for a bad file.
        """
        c = _native.load_config(None if path is None else os.fspath(path))
        return cls(
            c["shm_name"],
            c["attach_timeout_sec"],
            name=name,
            fallback_dir=c["fallback_dir"],
        )

    def get_frame(self) -> Optional[np.ndarray]:
        """The newest frame not read yet, as a private copy (numpy ``uint8``,
        ``(height, width, 3)`` BGR), or None when no new frame is there. Never blocks."""
        got = self._reader.read_copy(0.0)
        if got is None:
            return None
        return np.asarray(got[0])

    def wait_frame(self, timeout: Optional[float] = 1.0) -> Tuple[np.ndarray, Meta]:
        """Waits for a frame newer than the last one read and returns ``(copy, meta)``.

        The wait sleeps on the segment's futex with the GIL released, so other Python threads
        run meanwhile; ``timeout=None`` waits forever. Raises :class:`TimeoutError` when no new
        frame comes within ``timeout`` seconds. ``meta`` has ``frame_number``, ``capture_ns``,
        ``publish_ns``, ``width``, ``height``, ``writer_generation`` (CLOCK_MONOTONIC ns,
        comparable with :func:`time.monotonic_ns`).
        """
        got = self._reader.read_copy(_timeout(timeout))
        if got is None:
            raise TimeoutError(
                f"no new frame in segment {self.shm_name} within {timeout} s"
            )
        buf, meta = got
        return np.asarray(buf), meta

    def view(self, timeout: Optional[float] = 1.0) -> "FrameView":
        """A zero-copy view of the next frame, as a context manager::

            with consumer.view(timeout=1.0) as (arr, meta):
                result = model(arr)        # arr: read-only ndarray over the shared slot

        Entering waits like :meth:`wait_frame` (:class:`TimeoutError` when none comes).
        Leaving the block raises :class:`FrameOverwritten` if the writer overwrote the slot
        while the block ran (the block took longer than about ``slots - 1`` frame periods):
        then discard ``result``. The array's memory stays mapped as long as the array lives,
        but its bytes are only the frame inside the block; copy what you keep. The array is
        the slot itself: a later view of a frame in the same slot may be the same object.
        """
        return self._reader.view(_timeout(timeout))


class DetectionsConsumer(_Consumer):
    """A reader of the detections channel (``vision.detections_shm_name``, default
    ``billiards_detections``): each message is the detections JSON, returned as a dict."""

    _producer = "vision worker"

    def __init__(
        self,
        shm_name: str = "billiards_detections",
        attach_timeout: float = 5.0,
        *,
        name: Optional[str] = None,
        fallback_dir: Optional[str] = None,
    ) -> None:
        super().__init__(shm_name, attach_timeout, name=name, fallback_dir=fallback_dir)

    @classmethod
    def from_config(
        cls, path: Optional[str] = None, *, name: Optional[str] = None
    ) -> "DetectionsConsumer":
        """A consumer of the detections channel a configuration names (lookup order as in
        :meth:`VideoConsumer.from_config`; uses ``vision.detections_shm_name``)."""
        c = _native.load_config(None if path is None else os.fspath(path))
        return cls(
            c["detections_shm_name"],
            c["attach_timeout_sec"],
            name=name,
            fallback_dir=c["fallback_dir"],
        )

    def _decode(self, got: Any) -> Optional[Dict[str, Any]]:
        if got is None:
            return None
        payload, meta = got
        try:
            return json.loads(payload)
        except ValueError as e:
            raise ShmError(
                f"detections message {meta['frame_number']} in segment {self.shm_name} "
                f"is not valid JSON: {e}"
            ) from None

    def get(self) -> Optional[Dict[str, Any]]:
        """The newest detections not read yet, or None. Never blocks."""
        return self._decode(self._reader.read_bytes(0.0))

    def wait(self, timeout: Optional[float] = 1.0) -> Dict[str, Any]:
        """Waits (GIL released) for detections newer than the last ones read and returns
        them as a dict; :class:`TimeoutError` when none come within ``timeout`` seconds."""
        d = self._decode(self._reader.read_bytes(_timeout(timeout)))
        if d is None:
            raise TimeoutError(
                f"no new detections in segment {self.shm_name} within {timeout} s"
            )
        return d
