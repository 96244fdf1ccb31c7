//! Process tests of `billiards-vision-worker`: the real binary against real segments, fed by
//! a `shm_core::Writer` in a thread that publishes frames of the official synthetic renderer.
//!
//! Every child is killed and reaped, and every segment unlinked, even when a test fails
//! (guards with `Drop`); names are unique per process and test.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use billiards_vision_worker::model::{DetectionsJson, TableSource};
use billiards_vision_worker::worker::READER_NAME;
use shm_core::{
    AttachOptions, CreateMode, Monitor, PublishMeta, Reader, SegmentLocation, SegmentSpec, Writer,
};
use video_worker::synthetic::{Scene, SceneParams, SceneStyle};

const W: u32 = 640;
const H: u32 = 360;

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn unique(tag: &str) -> String {
    format!(
        "vwt_{}_{}_{tag}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Unlinks a segment when dropped.
struct SegmentGuard(SegmentLocation);

impl Drop for SegmentGuard {
    fn drop(&mut self) {
        let _ = shm_core::unlink(&self.0);
    }
}

/// Kills and reaps the child when dropped.
struct ChildGuard(Option<Child>);

impl ChildGuard {
    fn pid(&self) -> u32 {
        self.0.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    fn running(&mut self) -> bool {
        matches!(self.0.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Waits up to `timeout` for the exit; returns its status and the whole stderr.
    fn wait_exit(&mut self, timeout: Duration) -> (Option<ExitStatus>, String) {
        let mut child = self.0.take().expect("child already reaped");
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Ok(Some(s)) = child.try_wait() {
                break Some(s);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        (status, err)
    }

    fn terminate(&mut self) {
        if let Some(c) = &self.0 {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A test's names, config file and segment guards.
struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
    frames: SegmentLocation,
    detections: SegmentLocation,
    _guards: Vec<SegmentGuard>,
}

fn setup(attach_timeout: f64) -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let (frames_name, det_name) = (unique("frames"), unique("det"));
    let config = dir.path().join("billiards.toml");
    std::fs::write(
        &config,
        format!(
            "[video]\nshm_name = \"{frames_name}\"\nwidth = {W}\nheight = {H}\nfps = 30\n\
             attach_timeout_sec = {attach_timeout}\nfallback_dir = \"{}\"\n\n\
             [vision]\ndetections_shm_name = \"{det_name}\"\n",
            dir.path().display()
        ),
    )
    .expect("write config");
    let frames = SegmentLocation::new(&frames_name, dir.path()).unwrap();
    let detections = SegmentLocation::new(&det_name, dir.path()).unwrap();
    let guards = vec![
        SegmentGuard(frames.clone()),
        SegmentGuard(detections.clone()),
    ];
    Setup {
        dir,
        config,
        frames,
        detections,
        _guards: guards,
    }
}

fn spawn_worker(config: &Path, supervised: bool) -> ChildGuard {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_billiards-vision-worker"));
    cmd.arg("--config")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd.env("RUST_LOG", "info")
        .env_remove("BILLIARDS_CONFIG")
        .env_remove("VIDEO_FILE");
    if supervised {
        cmd.arg("--supervised");
    }
    ChildGuard(Some(cmd.spawn().expect("spawn billiards-vision-worker")))
}

/// Publishes synthetic frames at about 30 fps until stopped; dropping it drops the writer
/// (a dead video worker, as far as readers can tell).
struct Feeder {
    stop: Arc<AtomicBool>,
    published: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Feeder {
    fn start(loc: &SegmentLocation, seed: u64) -> Feeder {
        let stop = Arc::new(AtomicBool::new(false));
        let published = Arc::new(AtomicU64::new(0));
        let (s, p, loc) = (stop.clone(), published.clone(), loc.clone());
        let ready = Arc::new(AtomicBool::new(false));
        let r = ready.clone();
        let thread = std::thread::spawn(move || {
            let style = SceneStyle::default().still();
            let scene = Scene::new(SceneParams::new(W, H, seed).with_style(style)).expect("scene");
            let mut frame = vec![0u8; scene.frame_len()];
            scene.render_into(&mut frame).expect("render");
            let mut w = Writer::open(&loc, &SegmentSpec::frames(W, H, 3)).expect("open writer");
            r.store(true, Ordering::SeqCst);
            while !s.load(Ordering::SeqCst) {
                w.publish(&frame, PublishMeta::bgr(W, H, shm_core::monotonic_ns()))
                    .expect("publish");
                p.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(33));
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready.load(Ordering::SeqCst) && Instant::now() < deadline && !thread.is_finished() {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(ready.load(Ordering::SeqCst), "the feeder did not start");
        Feeder {
            stop,
            published,
            thread: Some(thread),
        }
    }
}

/// Publishes frames of a synthetic game in play mode (shots, still pauses, pockets) at about
/// 30 fps, the scene advancing 1/30 s per frame, until dropped.
struct PlayFeeder {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PlayFeeder {
    fn start(loc: &SegmentLocation, seed: u64) -> PlayFeeder {
        let stop = Arc::new(AtomicBool::new(false));
        let (s, loc) = (stop.clone(), loc.clone());
        let thread = std::thread::spawn(move || {
            let style = SceneStyle::default().play();
            let mut scene =
                Scene::new(SceneParams::new(W, H, seed).with_style(style)).expect("scene");
            let mut frame = vec![0u8; scene.frame_len()];
            let mut w = Writer::open(&loc, &SegmentSpec::frames(W, H, 3)).expect("open writer");
            while !s.load(Ordering::SeqCst) {
                scene.step(1.0 / 30.0);
                scene.render_into(&mut frame).expect("render");
                w.publish(&frame, PublishMeta::bgr(W, H, shm_core::monotonic_ns()))
                    .expect("publish");
                std::thread::sleep(Duration::from_millis(33));
            }
        });
        PlayFeeder {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for PlayFeeder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads detection records until `pred` accepts one or `timeout` passes.
fn next_record(
    r: &mut Reader,
    timeout: Duration,
    mut pred: impl FnMut(&DetectionsJson) -> bool,
) -> Option<DetectionsJson> {
    let deadline = Instant::now() + timeout;
    let mut buf = Vec::new();
    while Instant::now() < deadline {
        if !r.wait_next(Duration::from_millis(200)).expect("wait") {
            continue;
        }
        if let Some(meta) = r.read_latest(&mut buf).expect("read detections") {
            // The stream worker parses the bytes as JSON: they must be exactly one object with
            // the SPEC's keys and types.
            let v: serde_json::Value = serde_json::from_slice(&buf).expect("detections are JSON");
            check_spec_shape(&v);
            let d: DetectionsJson = serde_json::from_value(v).expect("detections parse");
            assert_eq!(
                meta.capture_ns, d.capture_ts_ns,
                "PublishMeta carries the frame's capture time"
            );
            if pred(&d) {
                return Some(d);
            }
        }
    }
    None
}

fn check_spec_shape(v: &serde_json::Value) {
    assert!(v["frame_number"].is_u64(), "{v}");
    assert!(v["capture_ts_ns"].is_u64(), "{v}");
    assert!(v["processed_ts_ns"].is_u64(), "{v}");
    assert!(
        v["processed_ts_ns"].as_u64() >= v["capture_ts_ns"].as_u64(),
        "{v}"
    );
    let corners = v["table"]["corners"].as_array().expect("table.corners");
    assert!(corners.is_empty() || corners.len() == 4, "{v}");
    for c in corners {
        let c = c.as_array().expect("corner");
        assert!(c.len() == 2 && c.iter().all(|x| x.is_number()), "{v}");
    }
    for b in v["balls"].as_array().expect("balls") {
        for k in ["x", "y", "radius"] {
            assert!(b[k].is_number(), "{v}");
        }
        let kind = b["kind"].as_str().expect("kind");
        assert!(
            ["cue", "eight", "solid", "stripe", "unknown"].contains(&kind),
            "{v}"
        );
        // Issue 14: the number is 0-15 or null (never left out), and the id follows it.
        let number = &b["number"];
        assert!(
            number.is_null() || number.as_u64().is_some_and(|n| n <= 15),
            "{v}"
        );
        match number.as_u64() {
            Some(n) => assert_eq!(b["id"].as_u64(), Some(n), "{v}"),
            None => assert!(b["id"].as_u64().is_some_and(|id| id >= 100), "{v}"),
        }
        let c = b["number_confidence"].as_f64().expect("number_confidence");
        assert!((0.0..=1.0).contains(&c), "{v}");
        assert!(b["moving"].is_boolean(), "{v}");
    }
    assert!(
        ["still", "moving"].contains(&v["motion"].as_str().expect("motion")),
        "{v}"
    );
    assert!(v["pocketed"].is_array(), "{v}");
    let mut numbers: Vec<u64> = v["balls"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["number"].as_u64())
        .collect();
    let n = numbers.len();
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(numbers.len(), n, "each number at most once per frame: {v}");
    // The SPEC's `cue`: always present, null or {tip: [x, y], angle_deg, confidence}.
    let cue = v.get("cue").expect("the cue key is always present");
    if !cue.is_null() {
        let tip = cue["tip"].as_array().expect("cue.tip");
        assert!(tip.len() == 2 && tip.iter().all(|x| x.is_number()), "{v}");
        assert!(cue["angle_deg"].is_number(), "{v}");
        assert!(cue["confidence"].is_number(), "{v}");
    }
}

fn attach_detections(loc: &SegmentLocation) -> Reader {
    Reader::attach(loc, AttachOptions::new("test", Duration::from_secs(60)))
        .expect("the detections channel appears")
}

#[test]
fn attach_timeout_exits_11_with_the_reason() {
    let s = setup(1.0);
    let started = Instant::now();
    let mut child = spawn_worker(&s.config, false);
    let (status, err) = child.wait_exit(Duration::from_secs(60));
    let status = status.expect("the worker exits by itself");
    assert_eq!(status.code(), Some(11), "{err}");
    let expected = format!(
        "exit-reason: video worker not available: segment {} not found after 1.0 s; start the tree with `billiards-supervisor start`",
        s.frames.name()
    );
    assert!(err.contains(&expected), "stderr lacks {expected:?}:\n{err}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "gave up before the timeout"
    );
    // Nothing was created: no detections channel is left behind.
    assert!(s.detections.existing_path().is_none());
}

#[test]
fn bad_config_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[vision]\nno_such_key = 1\n").unwrap();
    let mut child = spawn_worker(&config, false);
    let (status, err) = child.wait_exit(Duration::from_secs(60));
    assert_eq!(status.and_then(|s| s.code()), Some(2), "{err}");
    assert!(err.contains("exit-reason: invalid configuration"), "{err}");
}

#[test]
fn invalid_frame_segment_exits_12() {
    let s = setup(2.0);
    // Garbage where the segment should be: readers must refuse it, never crash.
    let path = s.frames.shm_path();
    std::fs::write(&path, vec![0xA5u8; 4096]).expect("write a bogus segment");
    let mut child = spawn_worker(&s.config, false);
    let (status, err) = child.wait_exit(Duration::from_secs(60));
    let _ = std::fs::remove_file(&path);
    assert_eq!(status.and_then(|s| s.code()), Some(12), "{err}");
    assert!(err.contains("exit-reason: frame segment:"), "{err}");
}

#[test]
fn detects_survives_a_writer_restart_and_cleans_up() {
    let s = setup(30.0);
    shm_core::create(
        &s.frames,
        &SegmentSpec::frames(W, H, 3),
        CreateMode::Exclusive,
    )
    .expect("create frames");
    let feeder = Feeder::start(&s.frames, 7);
    let mut child = spawn_worker(&s.config, false);
    let mut det = attach_detections(&s.detections);

    // Detections of the default (racked) scene: a table and most of its 16 balls.
    let first = next_record(&mut det, Duration::from_secs(120), |d| {
        d.table_found && d.balls.len() >= 12
    })
    .expect("detections with a table and the balls");
    assert!(first.frame_number >= 1);
    assert_eq!(first.table.corners.len(), 4);
    assert!(first.balls.iter().all(|b| b.id.is_some()), "tracked ids");

    // The writer dies: the worker keeps running and heartbeating.
    let published = feeder.published.load(Ordering::SeqCst);
    drop(feeder);
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        child.running(),
        "the vision worker must wait out a dead writer"
    );
    let snap = Monitor::open(&s.frames).expect("monitor").snapshot();
    let entry = snap
        .readers
        .iter()
        .find(|r| r.pid == child.pid())
        .expect("the worker keeps its reader entry");
    assert_eq!(entry.name, READER_NAME);
    assert!(
        entry.heartbeat_age < Duration::from_secs(2),
        "heartbeat {:?}",
        entry.heartbeat_age
    );

    // A new writer (a restarted video worker): detections resume with its frames.
    let feeder = Feeder::start(&s.frames, 8);
    let resumed = next_record(&mut det, Duration::from_secs(120), |d| {
        d.frame_number > published
    })
    .expect("detections resume after the writer restart");
    assert!(resumed.table_found);
    assert!(resumed.balls.len() >= 12, "{} balls", resumed.balls.len());

    // SIGTERM: clean exit 0, and a standalone worker removes its detections channel.
    child.terminate();
    let (status, err) = child.wait_exit(Duration::from_secs(30));
    drop(feeder);
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{err}");
    assert_eq!(
        err.matches("no frames from the video worker").count(),
        1,
        "one line per outage:\n{err}"
    );
    assert_eq!(
        err.matches("frames are back").count(),
        1,
        "one line per recovery:\n{err}"
    );
    assert!(
        !err.contains("re-attached"),
        "a writer restarting on the same segment never makes the reader move:\n{err}"
    );
    drop(det);
    assert!(
        s.detections.existing_path().is_none(),
        "detections channel left behind"
    );
}

#[test]
fn supervised_worker_uses_and_keeps_the_existing_channel() {
    let s = setup(30.0);
    shm_core::create(
        &s.frames,
        &SegmentSpec::frames(W, H, 3),
        CreateMode::Exclusive,
    )
    .expect("create frames");
    shm_core::create(
        &s.detections,
        &billiards_supervised::detections_channel(&config::Config::default())
            .expect("default names")
            .spec,
        CreateMode::Exclusive,
    )
    .expect("create detections");
    let feeder = Feeder::start(&s.frames, 3);
    let mut det = attach_detections(&s.detections);
    let mut child = spawn_worker(&s.config, true);
    let d = next_record(&mut det, Duration::from_secs(120), |d| d.table_found).expect("detections");
    assert!(!d.balls.is_empty());
    child.terminate();
    let (status, err) = child.wait_exit(Duration::from_secs(30));
    drop(feeder);
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{err}");
    // The supervisor owns the channel: the worker leaves it in place.
    assert!(s.detections.existing_path().is_some());
    let _ = &s.dir;
}

#[test]
fn follows_a_recreated_frame_segment() {
    let s = setup(30.0);
    let spec = SegmentSpec::frames(W, H, 3);
    shm_core::create(&s.frames, &spec, CreateMode::Exclusive).expect("create frames");
    let feeder = Feeder::start(&s.frames, 5);
    let mut child = spawn_worker(&s.config, false);
    let mut det = attach_detections(&s.detections);
    next_record(&mut det, Duration::from_secs(120), |d| d.table_found).expect("first detections");

    // A standalone video worker that restarts replaces its segment with a new one.
    drop(feeder);
    std::thread::sleep(Duration::from_secs(1));
    shm_core::create(&s.frames, &spec, CreateMode::ReplaceExisting).expect("recreate frames");
    let feeder = Feeder::start(&s.frames, 6);
    // The new segment numbers frames from 1 again: wait for a record newer than the restart.
    let restart_ns = shm_core::monotonic_ns();
    let d = next_record(&mut det, Duration::from_secs(120), |d| {
        d.capture_ts_ns > restart_ns
    })
    .expect("detections from the new segment");
    assert!(d.table_found);
    assert!(child.running());
    child.terminate();
    let (status, err) = child.wait_exit(Duration::from_secs(30));
    drop(feeder);
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{err}");
    assert!(err.contains("re-attached"), "{err}");
}

#[test]
fn sigterm_while_waiting_for_the_segment_exits_0() {
    let s = setup(60.0);
    let mut child = spawn_worker(&s.config, false);
    std::thread::sleep(Duration::from_millis(700));
    assert!(child.running());
    let t = Instant::now();
    child.terminate();
    let (status, err) = child.wait_exit(Duration::from_secs(30));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{err}");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    assert!(!err.contains("exit-reason"), "{err}");
}

#[test]
fn numbers_balls_and_reports_a_shot_of_a_synthetic_game() {
    let s = setup(30.0);
    shm_core::create(
        &s.frames,
        &SegmentSpec::frames(W, H, 3),
        CreateMode::Exclusive,
    )
    .expect("create frames");
    let _feeder = PlayFeeder::start(&s.frames, 5);
    let mut child = spawn_worker(&s.config, false);
    let mut det = attach_detections(&s.detections);

    // The rack, still for 0.6 s and then between shots: most balls get their number (the
    // record checks say: unique, id = number).
    let numbered = next_record(&mut det, Duration::from_secs(120), |d| {
        d.balls.iter().filter(|b| b.number.is_some()).count() >= 10
    })
    .expect("a record with at least 10 identified balls");
    assert!(
        numbered.balls.iter().any(|b| b.number == Some(0)),
        "the cue ball"
    );

    // The break ends when the table has been still for 0.5 s: a shot with the cue ball.
    let with_shot = next_record(&mut det, Duration::from_secs(180), |d| d.shot.is_some())
        .expect("a record announcing a finished shot");
    let shot = with_shot.shot.unwrap();
    assert_eq!(shot.id, 1);
    assert!(shot.end_frame > shot.start_frame, "{shot:?}");
    assert!(shot.duration_s >= 0.5, "{shot:?}");
    assert!(
        shot.balls_moved.contains(&0),
        "the cue ball moved: {shot:?}"
    );
    assert!(shot.start_unix_s > 1.6e9, "{shot:?}");
    child.terminate();
}

#[test]
fn table_corners_from_the_config_fix_the_table() {
    let s = setup(30.0);
    // The scene's own corners moved 6 px right: a found table would not be there.
    let scene = Scene::new(SceneParams::new(W, H, 7).with_style(SceneStyle::default().still()))
        .expect("scene");
    let fixed = scene.table_corners().map(|c| [c[0] + 6.0, c[1]]);
    let mut text = std::fs::read_to_string(&s.config).expect("read config");
    text.push_str(&format!(
        "table_corners = [{}]\n",
        fixed
            .iter()
            .map(|c| format!("[{}, {}]", c[0], c[1]))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    std::fs::write(&s.config, text).expect("write config");
    shm_core::create(
        &s.frames,
        &SegmentSpec::frames(W, H, 3),
        CreateMode::Exclusive,
    )
    .expect("create frames");
    let _feeder = Feeder::start(&s.frames, 7);
    let mut child = spawn_worker(&s.config, false);
    let mut det = attach_detections(&s.detections);
    let d = next_record(&mut det, Duration::from_secs(120), |d| {
        d.table_found && d.balls.len() >= 12
    })
    .expect("detections on the fixed table");
    assert_eq!(d.table_source, TableSource::Fixed);
    assert_eq!(d.table.corners.len(), 4);
    for (got, want) in d.table.corners.iter().zip(fixed.iter()) {
        assert!(
            (got[0] - want[0]).abs() < 0.02 && (got[1] - want[1]).abs() < 0.02,
            "{:?} is not the configured {fixed:?}",
            d.table.corners
        );
    }
    child.terminate();
    let (status, err) = child.wait_exit(Duration::from_secs(60));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{err}");
    assert!(
        err.contains("vision.table_corners"),
        "the log says so: {err}"
    );
}

#[test]
fn bad_table_corners_exit_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        "[vision]\ntable_corners = [[100, 80], [110, 630], [1170, 640], [1180, 90]]\n",
    )
    .unwrap();
    let mut child = spawn_worker(&config, false);
    let (status, err) = child.wait_exit(Duration::from_secs(60));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(config::exit_codes::USAGE),
        "{err}"
    );
    assert!(err.contains("exit-reason: invalid configuration"), "{err}");
    assert!(err.contains("vision.table_corners"), "{err}");
    assert!(err.contains("clockwise"), "{err}");
}
