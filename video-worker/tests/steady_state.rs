//! The capture loop does not allocate per frame once it runs: `run` in-process on a thread
//! whose heap allocations are counted, sampled between two frame numbers.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use billiards_video_worker::{run, RunOptions};
use common::*;

struct Counting;

/// One counter per test, so tests running in parallel do not count each other's threads.
static ALLOCS: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];
static NEXT_COUNTER: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Which counter this thread's allocations go to, if any.
    static TRACK: Cell<Option<usize>> = const { Cell::new(None) };
}

fn count() {
    if let Some(i) = TRACK.try_with(|t| t.get()).ok().flatten() {
        ALLOCS[i].fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: forwards every call to the system allocator unchanged; counting touches only an
// atomic and a const-initialised thread-local without destructor.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs the worker in-process on `config` and returns the allocations its thread made
/// between frame 20 and frame 80.
fn allocations_in_steady_state(ws: &Workspace, config: config::Config) -> u64 {
    let (w, h) = (config.video.width, config.video.height);
    let _seg = ws.create_segment(w, h, config.video.slots);
    let mut reader = ws.attach(Duration::from_secs(1));
    let stop: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
    let opts = RunOptions {
        supervised: true,
        ..RunOptions::default()
    };
    let counter = NEXT_COUNTER.fetch_add(1, Ordering::Relaxed);
    let allocs = &ALLOCS[counter];
    let worker = std::thread::spawn(move || {
        TRACK.with(|t| t.set(Some(counter)));
        run(&config, &opts, stop)
    });
    let mut buf = Vec::new();
    let wait_for = |reader: &mut shm_core::Reader, buf: &mut Vec<u8>, n: u64| {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(Instant::now() < end, "frame {n} never came");
            reader.wait_next(Duration::from_millis(100)).unwrap();
            if let Some(m) = reader.read_latest(buf).unwrap() {
                if m.frame_number >= n {
                    return;
                }
            }
        }
    };
    wait_for(&mut reader, &mut buf, 20);
    let before = allocs.load(Ordering::Relaxed);
    wait_for(&mut reader, &mut buf, 80);
    let after = allocs.load(Ordering::Relaxed);
    stop.store(true, Ordering::SeqCst);
    worker.join().unwrap().expect("worker ran");
    // The counter does see the worker thread: setting up (source, segment) allocates.
    assert!(allocs.load(Ordering::Relaxed) > 0);
    after - before
}

fn base_config(ws: &Workspace, width: u32, height: u32) -> config::Config {
    let mut c = config::Config::default();
    c.video.shm_name = ws.shm_name.clone();
    c.video.fallback_dir = ws.dir.path().display().to_string();
    c.video.width = width;
    c.video.height = height;
    c.video.fps = 60;
    c
}

#[test]
fn synthetic_source_does_not_allocate_per_frame() {
    let ws = Workspace::new("alloc_syn");
    let c = base_config(&ws, 320, 180);
    assert_eq!(allocations_in_steady_state(&ws, c), 0);
}

#[test]
fn file_source_does_not_allocate_per_frame() {
    for (file_size, tag) in [((320, 180), "direct"), ((160, 90), "resized")] {
        let ws = Workspace::new(&format!("alloc_file_{tag}"));
        let video = ws.path("v.avi");
        write_video(&video, 25, file_size.0, file_size.1, 60.0);
        let mut c = base_config(&ws, 320, 180);
        c.video.source.kind = config::SourceKind::File;
        c.video.source.path = video.display().to_string();
        c.video.source.looping = true;
        assert_eq!(allocations_in_steady_state(&ws, c), 0, "{tag}");
    }
}
