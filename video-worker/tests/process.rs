//! Process tests: the real binary against real segments, files and (missing) devices.

mod common;

use std::time::{Duration, Instant};

use billiards_video_worker::synthetic::{Scene, SceneParams};
use common::*;
use nix::sys::signal::Signal;
use shm_core::{Monitor, PixelFormat};

const LONG: Duration = Duration::from_secs(20);

#[test]
fn every_frame_of_a_file_arrives_in_order_with_the_right_content() {
    let ws = Workspace::new("order");
    let video = ws.path("count.avi");
    write_video(&video, 30, 320, 240, 15.0);
    let cfg = ws.config(
        "width = 320\nheight = 240\nslots = 4",
        &format!(
            "kind = \"file\"\npath = \"{}\"\nloop = false",
            video.display()
        ),
    );
    let _seg = ws.create_segment(320, 240, 4);
    let mut reader = ws.attach(Duration::from_secs(1));
    let mut worker = ws.spawn(&cfg, &["--supervised"]);
    let mut buf = Vec::new();
    let mut seen = Vec::new();
    let mut first_last = None::<((u64, u64), (u64, u64))>;
    let end = Instant::now() + LONG;
    let status = loop {
        assert!(
            Instant::now() < end,
            "worker did not finish: {}",
            worker.stderr()
        );
        let exited = worker.try_status();
        reader.wait_next(Duration::from_millis(100)).unwrap();
        while let Some(meta) = reader.read_latest(&mut buf).unwrap() {
            assert_eq!(
                (meta.width, meta.height, meta.format),
                (320, 240, PixelFormat::Bgr8)
            );
            let index = decode_index(&buf, 320, 240);
            assert_eq!(
                index as u64,
                meta.frame_number - 1,
                "frame {} shows index {index}",
                meta.frame_number
            );
            seen.push(meta.frame_number);
            let point = (meta.frame_number, meta.capture_ns);
            first_last = Some(match first_last {
                None => (point, point),
                Some((f, _)) => (f, point),
            });
        }
        if let Some(s) = exited {
            break s;
        }
    };
    let stderr = worker.stderr();
    assert!(status.success(), "exit {status:?}: {stderr}");
    assert!(stderr.contains("end of the video file"), "{stderr}");
    assert_eq!(reader.writer().latest_frame, 30, "all 30 frames published");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "in order: {seen:?}");
    assert!(
        seen.len() >= 20,
        "the reader kept up with a 15 fps file: {seen:?}"
    );
    // Paced in real time at the file's 15 fps.
    let ((n0, t0), (n1, t1)) = first_last.unwrap();
    let expected = (n1 - n0) as f64 / 15.0;
    let took = (t1 - t0) as f64 / 1e9;
    assert!(
        (took - expected).abs() < expected * 0.25 + 0.1,
        "{} frames took {took:.2}s, expected {expected:.2}s",
        n1 - n0
    );
}

#[test]
fn a_looping_file_continues_the_numbering() {
    let ws = Workspace::new("loop");
    let video = ws.path("ten.avi");
    write_video(&video, 10, 160, 120, 30.0);
    let cfg = ws.config(
        "width = 160\nheight = 120",
        &format!(
            "kind = \"file\"\npath = \"{}\"\nloop = true",
            video.display()
        ),
    );
    let _seg = ws.create_segment(160, 120, 3);
    let mut reader = ws.attach(Duration::from_secs(1));
    let mut worker = ws.spawn(&cfg, &["--supervised"]);
    let mut buf = Vec::new();
    let mut checked = 0;
    let end = Instant::now() + LONG;
    let mut last = 0;
    while last < 35 {
        assert!(Instant::now() < end, "too slow: {}", worker.stderr());
        assert!(
            worker.try_status().is_none(),
            "worker exited: {}",
            worker.stderr()
        );
        reader.wait_next(Duration::from_millis(100)).unwrap();
        if let Some(meta) = reader.read_latest(&mut buf).unwrap() {
            let index = decode_index(&buf, 160, 120);
            assert_eq!(
                index as u64,
                (meta.frame_number - 1) % 10,
                "frame {}",
                meta.frame_number
            );
            assert!(meta.frame_number > last);
            last = meta.frame_number;
            checked += 1;
        }
    }
    assert!(checked >= 10, "{checked}");
    worker.signal(Signal::SIGTERM);
    let status = worker
        .wait_timeout(Duration::from_secs(5))
        .expect("exits after SIGTERM");
    assert!(status.success(), "{}", worker.stderr());
    // No frame numbers were skipped at the loop point: the writer published them all.
    assert!(reader.writer().latest_frame >= 35);
}

#[test]
fn a_source_of_another_size_is_resized() {
    let ws = Workspace::new("resize");
    let video = ws.path("small.avi");
    write_video(&video, 20, 160, 120, 30.0);
    let cfg = ws.config(
        "width = 320\nheight = 240",
        &format!(
            "kind = \"file\"\npath = \"{}\"\nloop = true",
            video.display()
        ),
    );
    let _seg = ws.create_segment(320, 240, 3);
    let mut reader = ws.attach(Duration::from_secs(1));
    let mut worker = ws.spawn(&cfg, &["--supervised"]);
    let mut buf = Vec::new();
    let mut checked = 0;
    let end = Instant::now() + LONG;
    while checked < 10 {
        assert!(Instant::now() < end, "too slow: {}", worker.stderr());
        reader.wait_next(Duration::from_millis(100)).unwrap();
        if let Some(meta) = reader.read_latest(&mut buf).unwrap() {
            assert_eq!(
                (meta.width, meta.height, meta.len),
                (320, 240, 320 * 240 * 3)
            );
            assert_eq!(
                decode_index(&buf, 320, 240) as u64,
                (meta.frame_number - 1) % 20
            );
            checked += 1;
        }
    }
    worker.signal(Signal::SIGTERM);
    worker.wait_timeout(Duration::from_secs(5)).expect("exits");
    let stderr = worker.stderr();
    assert_eq!(
        stderr.matches("resizing").count(),
        1,
        "logged once: {stderr}"
    );
    assert!(
        stderr.contains("160x120") && stderr.contains("320x240"),
        "{stderr}"
    );
}

#[test]
fn a_missing_file_exits_with_source_unavailable() {
    let ws = Workspace::new("nofile");
    let missing = ws.path("nope.avi");
    let cfg = ws.config(
        "",
        &format!("kind = \"file\"\npath = \"{}\"", missing.display()),
    );
    let _seg = ws.guard_segment();
    let mut worker = ws.spawn(&cfg, &[]);
    let status = worker.wait_timeout(LONG).expect("exits");
    let stderr = worker.stderr();
    assert_eq!(status.code(), Some(10), "{stderr}");
    let want = format!(
        "exit-reason: video file unavailable: {}: no such file",
        missing.display()
    );
    assert!(stderr.lines().any(|l| l.starts_with(&want)), "{stderr}");
    assert!(!segment_exists(&ws.location()));
}

#[test]
fn a_file_that_is_not_a_video_exits_with_source_unavailable() {
    let ws = Workspace::new("notvideo");
    let junk = ws.path("junk.avi");
    std::fs::write(&junk, b"this is not a video").unwrap();
    let cfg = ws.config(
        "",
        &format!("kind = \"file\"\npath = \"{}\"", junk.display()),
    );
    let _seg = ws.guard_segment();
    let mut worker = ws.spawn(&cfg, &[]);
    let status = worker.wait_timeout(LONG).expect("exits");
    let stderr = worker.stderr();
    assert_eq!(status.code(), Some(10), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "exit-reason: video file unavailable: {}:",
            junk.display()
        )),
        "{stderr}"
    );
}

#[test]
fn a_missing_camera_exits_with_source_unavailable() {
    let ws = Workspace::new("nocam");
    let cfg = ws.config("", "kind = \"camera\"\npath = \"/dev/video99\"");
    let _seg = ws.guard_segment();
    let mut worker = ws.spawn(&cfg, &[]);
    let status = worker.wait_timeout(LONG).expect("exits");
    let stderr = worker.stderr();
    assert_eq!(status.code(), Some(10), "{stderr}");
    let last_reason = stderr
        .lines()
        .rfind(|l| l.contains("exit-reason: "))
        .unwrap_or_default();
    assert_eq!(
        last_reason, "exit-reason: camera unavailable: /dev/video99: no such device",
        "{stderr}"
    );
    assert!(!segment_exists(&ws.location()));
}

#[test]
fn a_missing_camera_by_index_names_the_device() {
    let ws = Workspace::new("nocamidx");
    let cfg = ws.config("", "kind = \"camera\"\ndevice = 98");
    let _seg = ws.guard_segment();
    let mut worker = ws.spawn(&cfg, &[]);
    let status = worker.wait_timeout(LONG).expect("exits");
    assert_eq!(status.code(), Some(10), "{}", worker.stderr());
    assert!(worker
        .stderr()
        .contains("exit-reason: camera unavailable: /dev/video98: no such device"));
}

#[test]
fn sigterm_stops_a_standalone_worker_cleanly_and_unlinks_the_segment() {
    let ws = Workspace::new("term");
    let cfg = ws.config("width = 640\nheight = 360", "kind = \"synthetic\"");
    let _seg = ws.guard_segment();
    let mut worker = ws.spawn(&cfg, &[]);
    let mut reader = ws.attach(LONG);
    let mut buf = Vec::new();
    let end = Instant::now() + LONG;
    let mut frames = 0;
    while frames < 5 {
        assert!(Instant::now() < end, "no frames: {}", worker.stderr());
        reader.wait_next(Duration::from_millis(200)).unwrap();
        if reader.read_latest(&mut buf).unwrap().is_some() {
            frames += 1;
        }
    }
    let path = ws
        .location()
        .existing_path()
        .expect("segment exists while running");
    let t = Instant::now();
    worker.signal(Signal::SIGTERM);
    let status = worker.wait_timeout(Duration::from_secs(5)).expect("exits");
    let took = t.elapsed();
    let stderr = worker.stderr();
    assert!(status.success(), "{status:?}: {stderr}");
    assert!(took < Duration::from_millis(2000), "took {took:?}");
    assert!(!path.exists(), "{} left behind", path.display());
    assert!(!segment_exists(&ws.location()));
    assert!(
        stderr.contains("SIGTERM received") && stderr.contains("frames="),
        "{stderr}"
    );
    drop(reader);
}

#[test]
fn supervised_worker_keeps_the_segment_on_restart_and_unlinks_on_a_full_stop() {
    let ws = Workspace::new("sup");
    let cfg = ws.config("width = 320\nheight = 180", "kind = \"synthetic\"");
    let _seg = ws.create_segment(320, 180, 3);
    let mut reader = ws.attach(Duration::from_secs(1));
    let mut buf = Vec::new();
    let read_some = |reader: &mut shm_core::Reader, buf: &mut Vec<u8>, worker: &Worker| {
        let end = Instant::now() + LONG;
        loop {
            assert!(Instant::now() < end, "no frames: {}", worker.stderr());
            reader.wait_next(Duration::from_millis(200)).unwrap();
            if let Some(m) = reader.read_latest(buf).unwrap() {
                return m;
            }
        }
    };

    // A watchdog-style restart: SIGTERM without a full-stop request keeps the segment.
    let mut first = ws.spawn(&cfg, &["--supervised"]);
    let m1 = read_some(&mut reader, &mut buf, &first);
    first.signal(Signal::SIGTERM);
    assert!(first
        .wait_timeout(Duration::from_secs(5))
        .expect("exits")
        .success());
    assert!(segment_exists(&ws.location()), "kept for the readers");

    // The next writer continues the numbering with a new generation.
    let mut second = ws.spawn(&cfg, &["--supervised"]);
    let m2 = read_some(&mut reader, &mut buf, &second);
    assert!(m2.frame_number > m1.frame_number);
    assert_eq!(m2.writer_generation, m1.writer_generation + 1);

    // A full stop: the supervisor marks it, then the writer unlinks on SIGTERM.
    Monitor::open(&ws.location()).unwrap().mark_stopping();
    second.signal(Signal::SIGTERM);
    let status = second.wait_timeout(Duration::from_secs(5)).expect("exits");
    assert!(status.success(), "{}", second.stderr());
    assert!(!segment_exists(&ws.location()), "{}", second.stderr());
}

#[test]
fn synthetic_frames_are_the_library_scene() {
    let ws = Workspace::new("synth");
    let cfg = ws.config(
        "width = 320\nheight = 180\nfps = 2",
        "kind = \"synthetic\"\nseed = 7",
    );
    let _seg = ws.create_segment(320, 180, 3);
    let mut reader = ws.attach(Duration::from_secs(1));
    let worker = ws.spawn(&cfg, &["--supervised"]);
    let mut buf = Vec::new();
    let end = Instant::now() + LONG;
    let meta = loop {
        assert!(Instant::now() < end, "no frames: {}", worker.stderr());
        reader.wait_next(Duration::from_millis(200)).unwrap();
        if let Some(m) = reader.read_latest(&mut buf).unwrap() {
            break m;
        }
    };
    assert_eq!(
        meta.frame_number, 1,
        "the first frame arrives within half a second"
    );
    let scene = Scene::new(SceneParams::new(320, 180, 7)).unwrap();
    let mut want = vec![0u8; scene.frame_len()];
    scene.render_into(&mut want).unwrap();
    assert!(buf == want, "frame 1 is the seed-7 scene");
}

#[test]
fn a_second_standalone_writer_is_refused() {
    let ws = Workspace::new("twice");
    let cfg = ws.config("width = 320\nheight = 180", "kind = \"synthetic\"");
    let _seg = ws.guard_segment();
    let first = ws.spawn(&cfg, &[]);
    let _reader = ws.attach(LONG);
    // Wait until the first one is the segment's writer.
    let end = Instant::now() + LONG;
    while Monitor::open(&ws.location())
        .map(|m| m.writer().pid)
        .unwrap_or(0)
        != first.pid() as u32
    {
        assert!(Instant::now() < end, "{}", first.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut second = ws.spawn(&cfg, &[]);
    let status = second.wait_timeout(LONG).expect("exits");
    let stderr = second.stderr();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "in use by a live video worker (pid {})",
            first.pid()
        )),
        "{stderr}"
    );
    assert!(
        segment_exists(&ws.location()),
        "the first worker's segment is untouched"
    );
}

#[test]
fn a_bad_config_exits_2() {
    let ws = Workspace::new("badcfg");
    let cfg = ws.config("slots = 1", "kind = \"synthetic\"");
    let mut worker = ws.spawn(&cfg, &[]);
    let status = worker.wait_timeout(LONG).expect("exits");
    let stderr = worker.stderr();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("exit-reason: invalid configuration:") && stderr.contains("video.slots"),
        "{stderr}"
    );
}

#[test]
fn a_supervised_worker_exits_when_its_supervisor_dies() {
    let ws = Workspace::new("orphan");
    let cfg = ws.config("width = 320\nheight = 180", "kind = \"synthetic\"");
    let _seg = ws.create_segment(320, 180, 3);
    // A stand-in supervisor: a shell that starts the worker and exits once the worker
    // publishes (then the worker has taken note of its parent; a fixed sleep raced with a slow
    // start on a loaded machine, where loading OpenCV's libraries alone can take a second).
    // The real supervisor also sets PR_SET_PDEATHSIG before exec, which this one does not.
    let pid_file = ws.path("worker.pid");
    let log = ws.path("orphan.log");
    let script = format!(
        "'{bin}' --supervised --config '{cfg}' 2>'{log}' & echo $! > '{pid}'; \
         i=0; while ! grep -q 'publishing frames' '{log}' 2>/dev/null && [ $i -lt 600 ]; do \
         sleep 0.05; i=$((i+1)); done",
        bin = BIN,
        cfg = cfg.display(),
        log = log.display(),
        pid = pid_file.display()
    );
    let mut sh = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .spawn()
        .unwrap();
    assert!(sh.wait().unwrap().success());
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let worker = nix::unistd::Pid::from_raw(pid);
    let end = Instant::now() + Duration::from_secs(5);
    let gone = loop {
        if nix::sys::signal::kill(worker, None).is_err() {
            break true;
        }
        if Instant::now() >= end {
            let _ = nix::sys::signal::kill(worker, Signal::SIGKILL);
            break false;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let log = std::fs::read_to_string(ws.path("orphan.log")).unwrap_or_default();
    assert!(gone, "the orphaned worker is still running: {log}");
    assert!(log.contains("supervisor is gone"), "{log}");
}

#[test]
fn a_capture_call_that_blocks_does_not_delay_the_stop() {
    // Opening a FIFO blocks until someone writes to it: a stand-in for a hung camera.
    let ws = Workspace::new("stuck");
    let fifo = ws.path("stuck.avi");
    nix::unistd::mkfifo(
        &fifo,
        nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
    )
    .unwrap();
    let cfg = ws.config(
        "",
        &format!("kind = \"file\"\npath = \"{}\"", fifo.display()),
    );
    let _seg = ws.guard_segment();
    let mut worker = ws.spawn(&cfg, &[]);
    let end = Instant::now() + LONG;
    while !worker.stderr().contains("video worker starting") {
        assert!(Instant::now() < end, "{}", worker.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    worker.signal(Signal::SIGTERM);
    let status = worker.wait_timeout(Duration::from_secs(5)).expect("exits");
    let took = t.elapsed();
    let stderr = worker.stderr();
    assert!(status.success(), "{status:?}: {stderr}");
    assert!(took < Duration::from_millis(2000), "took {took:?}");
    assert!(stderr.contains("exiting without it"), "{stderr}");
}

#[test]
fn stamped_frames_carry_their_number_at_both_ends() {
    let ws = Workspace::new("stamp");
    let cfg = ws.config(
        "width = 160\nheight = 120\nfps = 30",
        "kind = \"synthetic\"",
    );
    let _seg = ws.create_segment(160, 120, 3);
    let mut reader = ws.attach(Duration::from_secs(1));
    let worker = ws.spawn_env(&cfg, &["--supervised"], &[("BILLIARDS_STAMP_FRAMES", "1")]);
    let mut buf = Vec::new();
    let end = Instant::now() + LONG;
    let mut checked = 0;
    while checked < 5 {
        assert!(Instant::now() < end, "no frames: {}", worker.stderr());
        reader.wait_next(Duration::from_millis(200)).unwrap();
        if let Some(m) = reader.read_latest(&mut buf).unwrap() {
            let n = m.frame_number.to_le_bytes();
            assert_eq!(&buf[..8], &n, "head stamp of frame {}", m.frame_number);
            assert_eq!(
                &buf[buf.len() - 8..],
                &n,
                "tail stamp of frame {}",
                m.frame_number
            );
            checked += 1;
        }
    }
}
