//! `billiards_shm._native`: the Rust half of the `billiards_shm` Python package.
//!
//! It wraps `shm_core::Reader` for Python: attach with a timeout, futex waits with the GIL
//! released, seqlock-checked copies into pooled buffers, and zero-copy holds of a slot whose
//! buffer object owns a reference to the mapping (so no numpy array can outlive the memory it
//! points into). The Python half (`python/billiards_shm/`) adds the public classes on top.
//!
//! This crate owns only the translation between shm-core and Python objects. It must not know
//! the segment layout or the synchronisation protocol (shm-core does), nor unlink or create a
//! segment: Python readers never change a segment's lifetime.
//!
//! numpy is used without a compile-time dependency: frame buffers expose
//! `__array_interface__`, so `numpy.asarray(buffer)` builds an array whose base is the buffer.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyRuntimeError, PyTimeoutError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyBytes, PyDict, PyTuple};

use shm_core::{
    AttachError, AttachOptions, FrameMeta, HeldFrame, PixelFormat, SegmentLocation, ZeroCopy,
};

create_exception!(
    _native,
    ShmError,
    PyException,
    "Base class of the errors of billiards_shm."
);
create_exception!(
    _native,
    VideoModuleNotAvailableError,
    ShmError,
    "The segment did not appear within attach_timeout (the message names it)."
);
create_exception!(
    _native,
    FrameOverwritten,
    ShmError,
    "The writer overwrote the slot while a zero-copy view was open: discard what was computed."
);
create_exception!(
    _native,
    ConfigError,
    ShmError,
    "The configuration file is missing or invalid (the message names the file and the key)."
);

/// Longest time the GIL stays released in one wait, so Ctrl-C (KeyboardInterrupt) is seen.
const SIGNAL_CHECK: Duration = Duration::from_millis(200);
/// Copy buffers kept for reuse: a frame being processed, one being read, and a spare.
const POOL_SIZE: usize = 3;

type Pool = Arc<Mutex<Vec<Vec<u8>>>>;

/// `numpy.asarray`, imported once.
static ASARRAY: GILOnceCell<Py<PyAny>> = GILOnceCell::new();

/// A read-only array over one slot, made once and handed out for every frame held in that
/// slot: the array is the slot, so a new ndarray per frame would only add work to each
/// wake-up. Its base (a [`HeldBuffer`]) owns a reference to the mapping.
struct SlotArray {
    addr: usize,
    layout: Layout,
    array: Py<PyAny>,
}

/// What decides an array's shape and strides (compared per frame without allocating).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Layout {
    width: u32,
    height: u32,
    stride: u32,
    len: usize,
    format: PixelFormat,
}

impl Layout {
    fn of(m: &FrameMeta) -> Layout {
        Layout {
            width: m.width,
            height: m.height,
            stride: m.stride,
            len: m.len,
            format: m.format,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the reader inconsistent in a way that
    // matters more than failing every later call would.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A timeout in seconds from Python: finite and >= 0, or infinite (wait forever).
fn timeout_arg(seconds: f64) -> PyResult<Option<Duration>> {
    if seconds.is_nan() || seconds < 0.0 {
        return Err(PyValueError::new_err(format!(
            "timeout must be a number of seconds >= 0 (or None to wait forever), not {seconds}"
        )));
    }
    if seconds.is_infinite() {
        return Ok(None);
    }
    Duration::try_from_secs_f64(seconds)
        .map(Some)
        .map_err(|e| PyValueError::new_err(format!("timeout {seconds}: {e}")))
}

/// The shape and strides (bytes) of a frame as numpy sees it.
fn geometry(meta: &FrameMeta) -> (Vec<usize>, Option<Vec<usize>>) {
    let (w, h, stride) = (
        meta.width as usize,
        meta.height as usize,
        meta.stride as usize,
    );
    match meta.format {
        PixelFormat::Bgr8 => (vec![h, w, 3], (stride != w * 3).then(|| vec![stride, 3, 1])),
        PixelFormat::Gray8 => (vec![h, w], (stride != w).then(|| vec![stride, 1])),
        PixelFormat::Bytes => (vec![meta.len], None),
    }
}

/// An empty-valued dict with the metadata keys, copied for every frame's `meta`.
static META_TEMPLATE: GILOnceCell<Py<PyDict>> = GILOnceCell::new();

fn meta_dict<'py>(py: Python<'py>, m: &FrameMeta) -> PyResult<Bound<'py, PyDict>> {
    // A copy of a dict that already has the six (interned) keys gets a key table of the right
    // size in one allocation; a new dict would grow its table at the sixth key, and each of
    // those allocations is memory a freshly woken reader touches with cold caches.
    let template = META_TEMPLATE.get_or_try_init(py, || {
        let d = PyDict::new(py);
        for key in [
            intern!(py, "frame_number"),
            intern!(py, "capture_ns"),
            intern!(py, "publish_ns"),
            intern!(py, "width"),
            intern!(py, "height"),
            intern!(py, "writer_generation"),
        ] {
            d.set_item(key, py.None())?;
        }
        Ok::<_, PyErr>(d.unbind())
    })?;
    let d = template.bind(py).copy()?;
    d.set_item(intern!(py, "frame_number"), m.frame_number)?;
    d.set_item(intern!(py, "capture_ns"), m.capture_ns)?;
    d.set_item(intern!(py, "publish_ns"), m.publish_ns)?;
    d.set_item(intern!(py, "width"), m.width)?;
    d.set_item(intern!(py, "height"), m.height)?;
    d.set_item(intern!(py, "writer_generation"), m.writer_generation)?;
    Ok(d)
}

fn array_interface<'py>(
    py: Python<'py>,
    ptr: usize,
    readonly: bool,
    shape: &[usize],
    strides: &Option<Vec<usize>>,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("version", 3)?;
    d.set_item("typestr", "|u1")?;
    d.set_item("shape", PyTuple::new(py, shape)?)?;
    match strides {
        Some(s) => d.set_item("strides", PyTuple::new(py, s)?)?,
        None => d.set_item("strides", py.None())?,
    }
    d.set_item("data", (ptr, readonly))?;
    Ok(d)
}

/// A private copy of one frame; `numpy.asarray(buffer)` is a writable array over it. The
/// memory goes back to its reader's pool when the last array over it is gone.
#[pyclass(module = "billiards_shm._native", frozen)]
struct FrameBuffer {
    buf: Vec<u8>,
    shape: Vec<usize>,
    strides: Option<Vec<usize>>,
    pool: Weak<Mutex<Vec<Vec<u8>>>>,
}

#[pymethods]
impl FrameBuffer {
    /// numpy's array interface (version 3).
    #[getter]
    fn __array_interface__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        array_interface(
            py,
            self.buf.as_ptr() as usize,
            false,
            &self.shape,
            &self.strides,
        )
    }

    fn __len__(&self) -> usize {
        self.buf.len()
    }
}

impl Drop for FrameBuffer {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.upgrade() {
            let mut p = lock(&pool);
            if p.len() < POOL_SIZE {
                p.push(std::mem::take(&mut self.buf));
            }
        }
    }
}

/// A slot seen in place; `numpy.asarray(held)` is a read-only array over the shared memory.
/// It owns a reference to the mapping, so the array's memory stays mapped for as long as the
/// array lives, even after the reader stopped; the bytes are the frame only until the writer
/// laps the reader (see [`FrameView`]'s `__exit__`).
#[pyclass(module = "billiards_shm._native", frozen)]
struct HeldBuffer {
    held: HeldFrame,
    shape: Vec<usize>,
    strides: Option<Vec<usize>>,
}

#[pymethods]
impl HeldBuffer {
    /// numpy's array interface (version 3), read-only.
    #[getter]
    fn __array_interface__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        array_interface(
            py,
            self.held.view().as_ptr() as usize,
            true,
            &self.shape,
            &self.strides,
        )
    }

    fn __len__(&self) -> usize {
        self.held.meta().len
    }
}

/// A reader of one segment (frames or detections), attached on `attach()`.
#[pyclass(module = "billiards_shm._native", frozen)]
struct Reader {
    loc: SegmentLocation,
    reader_name: String,
    /// What is missing when the segment does not appear ("video worker", "vision worker").
    producer: String,
    inner: Mutex<Option<shm_core::Reader>>,
    pool: Pool,
    /// Only touched with the GIL held (it holds Python objects).
    slot_arrays: Mutex<Vec<SlotArray>>,
}

impl Reader {
    fn not_attached(&self) -> PyErr {
        PyRuntimeError::new_err(format!(
            "the consumer of segment {} is not started; call start() first",
            self.loc.name()
        ))
    }

    fn attach_error(&self, e: AttachError) -> PyErr {
        match e {
            AttachError::NotFound { name, waited } => {
                VideoModuleNotAvailableError::new_err(format!(
                    "{} not available: segment {name} not found after {:.1} s (looked in {} and {}); start the tree with `billiards-supervisor start`, or check the segment name and fallback_dir",
                    self.producer,
                    waited.as_secs_f64(),
                    self.loc.shm_path().display(),
                    self.loc.fallback_path().display(),
                ))
            }
            other => ShmError::new_err(other.to_string()),
        }
    }

    /// Runs `step` on the attached reader, with the GIL released, until it yields a value or
    /// `timeout` passes (`None` = forever); between steps the reader sleeps on the futex.
    /// Pending Python signals are checked at least every [`SIGNAL_CHECK`].
    fn blocking<T: Send>(
        &self,
        py: Python<'_>,
        timeout: Option<Duration>,
        mut step: impl FnMut(&mut shm_core::Reader) -> Result<Option<T>, shm_core::ReadError> + Send,
    ) -> PyResult<Option<T>> {
        // None: wait forever (no timeout, or one too large to represent).
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            let slice_end = Instant::now() + SIGNAL_CHECK;
            let end = deadline.map_or(slice_end, |d| d.min(slice_end));
            let out: Result<Option<T>, Option<shm_core::ReadError>> = py.allow_threads(|| {
                let mut g = lock(&self.inner);
                let r = g.as_mut().ok_or(None)?;
                loop {
                    if let Some(v) = step(r).map_err(Some)? {
                        return Ok(Some(v));
                    }
                    let now = Instant::now();
                    if now >= end {
                        return Ok(None);
                    }
                    // An early wake-up just loops: `step` decides whether a frame is there.
                    r.wait_next(end - now).map_err(Some)?;
                }
            });
            match out {
                Ok(Some(v)) => return Ok(Some(v)),
                Ok(None) => {}
                Err(None) => return Err(self.not_attached()),
                Err(Some(e)) => return Err(ShmError::new_err(e.to_string())),
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
            py.check_signals()?;
        }
    }
}

impl Reader {
    /// Waits for the newest unread frame and holds it in place: the slot's read-only array
    /// (made once per slot and layout, see [`SlotArray`]) and the hold.
    fn hold_slot(
        &self,
        py: Python<'_>,
        timeout: Option<Duration>,
    ) -> PyResult<Option<(Py<PyAny>, HeldFrame)>> {
        let Some(held) = self.blocking(py, timeout, |r| r.hold_latest())? else {
            return Ok(None);
        };
        let layout = Layout::of(held.meta());
        let addr = held.view().as_ptr() as usize;
        if let Some(a) = lock(&self.slot_arrays)
            .iter()
            .find(|a| a.addr == addr && a.layout == layout)
        {
            return Ok(Some((a.array.clone_ref(py), held)));
        }
        let (shape, strides) = geometry(held.meta());
        let base = HeldBuffer {
            held: held.clone(),
            shape: shape.clone(),
            strides: strides.clone(),
        };
        let asarray = ASARRAY.get_or_try_init(py, || {
            Ok::<_, PyErr>(py.import("numpy")?.getattr("asarray")?.unbind())
        })?;
        // numpy runs Python code (it may let another thread take the GIL): the cache is not
        // locked meanwhile, so that thread cannot block on it while holding the GIL.
        let array = asarray.bind(py).call1((base,))?.unbind();
        let mut cache = lock(&self.slot_arrays);
        // A slot whose frame layout changed replaces its old array.
        cache.retain(|a| a.addr != addr);
        cache.push(SlotArray {
            addr,
            layout,
            array: array.clone_ref(py),
        });
        Ok(Some((array, held)))
    }

    /// Ends a hold: whether the slot was left intact (the frame counts as read).
    fn release_slot(&self, py: Python<'_>, held: &HeldFrame) -> bool {
        let release = |inner: &mut Option<shm_core::Reader>| match inner.as_mut() {
            Some(r) => matches!(r.release(held), ZeroCopy::Intact { .. }),
            None => held.is_intact(),
        };
        // The lock is free unless another thread of this process waits on this reader; only
        // then is the GIL let go while waiting for it (that thread may need the GIL to finish).
        // Not letting it go otherwise spares every frame a GIL hand-over.
        match self.inner.try_lock() {
            Ok(mut g) => release(&mut g),
            Err(std::sync::TryLockError::Poisoned(e)) => release(&mut e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => {
                py.allow_threads(|| release(&mut lock(&self.inner)))
            }
        }
    }
}

/// A zero-copy read as a context manager: `with reader.view(t) as (arr, meta): ...`.
///
/// It lives in Rust because it runs once per frame in every zero-copy reader: each Python
/// call frame it saves is memory a freshly woken reader touches with cold caches.
#[pyclass(module = "billiards_shm._native")]
struct FrameView {
    reader: Py<Reader>,
    timeout: Option<Duration>,
    /// The timeout as given, for the error message.
    timeout_s: f64,
    held: Option<HeldFrame>,
    meta: Option<Py<PyDict>>,
}

#[pymethods]
impl FrameView {
    /// Waits for the next frame: `(arr, meta)`, or TimeoutError.
    fn __enter__<'py>(&mut self, py: Python<'py>) -> PyResult<(Py<PyAny>, Py<PyDict>)> {
        if self.held.is_some() {
            return Err(PyRuntimeError::new_err(
                "this view is already open; call consumer.view() again",
            ));
        }
        let reader = self.reader.get();
        let Some((array, held)) = reader.hold_slot(py, self.timeout)? else {
            return Err(PyTimeoutError::new_err(format!(
                "no new frame in segment {} within {} s",
                reader.loc.name(),
                self.timeout_s
            )));
        };
        let meta = meta_dict(py, held.meta())?.unbind();
        self.held = Some(held);
        self.meta = Some(meta.clone_ref(py));
        Ok((array, meta))
    }

    /// Ends the read; raises FrameOverwritten when the writer lapped the block (unless the
    /// block already raised). Never suppresses the block's exception.
    #[pyo3(signature = (exc_type = None, _exc = None, _tb = None))]
    fn __exit__(
        &mut self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let Some(held) = self.held.take() else {
            return Ok(false);
        };
        let reader = self.reader.get();
        let intact = reader.release_slot(py, &held);
        if !intact && exc_type.is_none_or(|t| t.is_none()) {
            return Err(FrameOverwritten::new_err(format!(
                "frame {} of segment {} was overwritten by the writer while the view was \
                 open; discard what was computed from it (keep the block shorter than a frame \
                 period or two, or use wait_frame() for a private copy)",
                held.meta().frame_number,
                reader.loc.name()
            )));
        }
        Ok(false)
    }

    /// The metadata of the frame of the last `__enter__` (None before it).
    #[getter]
    fn meta(&self, py: Python<'_>) -> Option<Py<PyDict>> {
        self.meta.as_ref().map(|m| m.clone_ref(py))
    }
}

#[pymethods]
impl Reader {
    /// A reader of segment `segment` (looked for in /dev/shm, then in `fallback_dir`), shown
    /// as `reader_name` in the reader table. `producer` names the process that creates the
    /// segment, for the error when it is missing.
    #[new]
    #[pyo3(signature = (segment, fallback_dir, reader_name, producer = "video worker"))]
    fn new(segment: &str, fallback_dir: &str, reader_name: &str, producer: &str) -> PyResult<Self> {
        let loc = SegmentLocation::new(segment, fallback_dir)
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(Reader {
            loc,
            reader_name: reader_name.into(),
            producer: producer.into(),
            inner: Mutex::new(None),
            pool: Arc::new(Mutex::new(Vec::new())),
            slot_arrays: Mutex::new(Vec::new()),
        })
    }

    /// Attaches (waiting up to `timeout` seconds for the segment) and claims a reader-table
    /// entry. Does nothing when already attached.
    fn attach(&self, py: Python<'_>, timeout: f64) -> PyResult<()> {
        let timeout = timeout_arg(timeout)?.unwrap_or(Duration::MAX);
        let r = py.allow_threads(|| {
            let mut g = lock(&self.inner);
            if g.is_some() {
                return Ok(());
            }
            let opts = AttachOptions::new(&self.reader_name, timeout);
            *g = Some(shm_core::Reader::attach(&self.loc, opts)?);
            Ok(())
        });
        r.map_err(|e| self.attach_error(e))
    }

    /// Releases the reader-table entry and this reader's reference to the mapping (buffers
    /// handed out keep theirs). Never removes the segment.
    fn close(&self, py: Python<'_>) {
        let r = py.allow_threads(|| lock(&self.inner).take());
        drop(r);
        // Arrays the caller still holds keep the mapping alive by themselves.
        lock(&self.slot_arrays).clear();
    }

    /// Whether `attach()` succeeded and `close()` was not called.
    #[getter]
    fn attached(&self, py: Python<'_>) -> bool {
        py.allow_threads(|| lock(&self.inner).is_some())
    }

    /// The segment's name.
    #[getter]
    fn segment(&self) -> String {
        self.loc.name().into()
    }

    /// The name shown in the reader table.
    #[getter]
    fn reader_name(&self) -> String {
        self.reader_name.clone()
    }

    /// What the segment says about itself: name, path, size_bytes, slots, slot_bytes, width,
    /// height, fallback, writer_pid, writer_alive, writer_generation, latest_frame.
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (info, w) = py
            .allow_threads(|| {
                lock(&self.inner)
                    .as_ref()
                    .map(|r| (r.info().clone(), r.writer()))
            })
            .ok_or_else(|| self.not_attached())?;
        let d = PyDict::new(py);
        d.set_item("name", &info.name)?;
        d.set_item("path", info.path.display().to_string())?;
        d.set_item("size_bytes", info.size_bytes)?;
        d.set_item("slots", info.spec.slot_count)?;
        d.set_item("slot_bytes", info.spec.slot_capacity)?;
        d.set_item("width", info.spec.width)?;
        d.set_item("height", info.spec.height)?;
        d.set_item("fallback", info.fallback)?;
        d.set_item("writer_pid", w.pid)?;
        d.set_item("writer_alive", w.alive)?;
        d.set_item("writer_generation", w.generation)?;
        d.set_item("latest_frame", w.latest_frame)?;
        Ok(d)
    }

    /// Blocks (GIL released) until a frame newer than the last one read is there: True, or
    /// False after `timeout` seconds.
    fn wait(&self, py: Python<'_>, timeout: f64) -> PyResult<bool> {
        let t = timeout_arg(timeout)?;
        let got = self.blocking(py, t, |r| Ok(r.wait_next(Duration::ZERO)?.then_some(())))?;
        Ok(got.is_some())
    }

    /// Copies the newest unread frame out (seqlock-checked, GIL released), waiting up to
    /// `timeout` seconds (0: do not wait). Returns `(FrameBuffer, meta)` or None.
    fn read_copy<'py>(
        &self,
        py: Python<'py>,
        timeout: f64,
    ) -> PyResult<Option<(FrameBuffer, Bound<'py, PyDict>)>> {
        let t = timeout_arg(timeout)?;
        let pool = &self.pool;
        let mut buf = lock(pool).pop().unwrap_or_default();
        let got = self.blocking(py, t, |r| r.read_latest(&mut buf))?;
        let Some(meta) = got else {
            let mut p = lock(pool);
            if p.len() < POOL_SIZE {
                p.push(buf);
            }
            return Ok(None);
        };
        let (shape, strides) = geometry(&meta);
        let fb = FrameBuffer {
            buf,
            shape,
            strides,
            pool: Arc::downgrade(pool),
        };
        Ok(Some((fb, meta_dict(py, &meta)?)))
    }

    /// Like `read_copy`, but returns the payload as `bytes` (for the detections JSON).
    fn read_bytes<'py>(
        &self,
        py: Python<'py>,
        timeout: f64,
    ) -> PyResult<Option<(Bound<'py, PyBytes>, Bound<'py, PyDict>)>> {
        let t = timeout_arg(timeout)?;
        let mut buf = Vec::new();
        let got = self.blocking(py, t, |r| r.read_latest(&mut buf))?;
        match got {
            Some(meta) => Ok(Some((PyBytes::new(py, &buf), meta_dict(py, &meta)?))),
            None => Ok(None),
        }
    }

    /// A zero-copy read as a context manager (see [`FrameView`]): entering waits up to
    /// `timeout` seconds (`None` or `inf`: forever) for a new frame. `VideoConsumer.view` is
    /// this method itself (no Python frame per frame), so it takes the public signature.
    #[pyo3(signature = (timeout = Some(1.0)))]
    fn view(slf: Py<Self>, timeout: Option<f64>) -> PyResult<FrameView> {
        let timeout = timeout.unwrap_or(f64::INFINITY);
        Ok(FrameView {
            reader: slf,
            timeout: timeout_arg(timeout)?,
            timeout_s: timeout,
            held: None,
            meta: None,
        })
    }

    /// This reader's counters: frames_read, frames_missed, torn_retries, latency_p50_ns,
    /// latency_p99_ns (the latencies are refreshed every 0.5 s).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = py
            .allow_threads(|| lock(&self.inner).as_ref().map(|r| r.stats()))
            .unwrap_or_default();
        let d = PyDict::new(py);
        d.set_item("frames_read", s.frames_read)?;
        d.set_item("frames_missed", s.frames_missed)?;
        d.set_item("torn_retries", s.torn_retries)?;
        d.set_item("latency_p50_ns", s.latency_p50_ns)?;
        d.set_item("latency_p99_ns", s.latency_p99_ns)?;
        Ok(d)
    }
}

/// The product's configuration, found in its lookup order (`path`, else `$BILLIARDS_CONFIG`,
/// else `./billiards.toml`, else the built-in defaults) and validated. Returns the keys a
/// consumer needs: config_path, shm_name, detections_shm_name, attach_timeout_sec,
/// fallback_dir (resolved: `$XDG_RUNTIME_DIR` or `/tmp` when the config leaves it empty).
#[pyfunction]
#[pyo3(signature = (path = None))]
fn load_config<'py>(py: Python<'py>, path: Option<PathBuf>) -> PyResult<Bound<'py, PyDict>> {
    let loaded = config::load(path.as_deref()).map_err(|e| ConfigError::new_err(e.to_string()))?;
    let c = &loaded.config;
    let d = PyDict::new(py);
    d.set_item("config_path", loaded.origin.display())?;
    d.set_item("shm_name", &c.video.shm_name)?;
    d.set_item("detections_shm_name", &c.vision.detections_shm_name)?;
    d.set_item("attach_timeout_sec", c.video.attach_timeout_sec)?;
    d.set_item("fallback_dir", c.shm_fallback_dir().display().to_string())?;
    Ok(d)
}

/// The fallback directory the product uses when the configuration leaves it empty.
#[pyfunction]
fn default_fallback_dir() -> String {
    config::Config::default()
        .shm_fallback_dir()
        .display()
        .to_string()
}

/// CLOCK_MONOTONIC in nanoseconds (the clock of `meta["publish_ns"]`).
#[pyfunction]
fn monotonic_ns() -> u64 {
    shm_core::monotonic_ns()
}

/// This process's CPU time (user + system) in nanoseconds.
#[pyfunction]
fn process_cpu_ns() -> u64 {
    shm_core::process_cpu_ns()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("ShmError", py.get_type::<ShmError>())?;
    m.add(
        "VideoModuleNotAvailableError",
        py.get_type::<VideoModuleNotAvailableError>(),
    )?;
    m.add("FrameOverwritten", py.get_type::<FrameOverwritten>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add_class::<Reader>()?;
    m.add_class::<FrameBuffer>()?;
    m.add_class::<HeldBuffer>()?;
    m.add_class::<FrameView>()?;
    m.add_function(wrap_pyfunction!(load_config, m)?)?;
    m.add_function(wrap_pyfunction!(default_fallback_dir, m)?)?;
    m.add_function(wrap_pyfunction!(monotonic_ns, m)?)?;
    m.add_function(wrap_pyfunction!(process_cpu_ns, m)?)?;
    Ok(())
}
