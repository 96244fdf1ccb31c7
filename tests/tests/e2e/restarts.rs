//! Crashes, the watchdog, backoff, `failed`, and `restart WORKER`, with the real workers.

use std::time::{Duration, Instant};

use billiards_tests::*;

const START: Duration = Duration::from_secs(30);

fn worker(s: &Status, name: &str) -> WorkerStatus {
    s.worker(name)
        .unwrap_or_else(|| panic!("no {name} in {s:?}"))
        .clone()
}

fn stop(env: &TestEnv, sup: &mut Proc) {
    assert_eq!(
        sup.terminate(Duration::from_secs(15)),
        Some(0),
        "clean stop"
    );
    assert!(
        env.leftover_segments().is_empty(),
        "{:?}",
        env.leftover_segments()
    );
}

#[test]
fn each_killed_worker_is_back_within_1s_and_readers_survive_a_video_restart() {
    let env = TestEnv::new("killeach");
    let cfg = env.write_config(&env.config());
    let mut sup = env.start(&cfg);
    env.wait_running(START);
    let mut watcher = FrameWatcher::attach(&env, "test");
    assert!(
        watcher.next_frame(Duration::from_secs(5)).is_some(),
        "frames flow"
    );

    for name in ["video", "vision", "stream"] {
        let before = env.wait_running(Duration::from_secs(15));
        let old = worker(&before, name);
        let old_pid = old.pid.unwrap();
        let others: Vec<(String, u32, u32)> = before
            .workers
            .iter()
            .filter(|w| w.name != name)
            .map(|w| (w.name.clone(), w.pid.unwrap(), w.restarts))
            .collect();
        let last_seen = watcher
            .next_frame(Duration::from_secs(5))
            .expect("frames before the kill");

        let t = Instant::now();
        signal(old_pid, libc::SIGKILL);
        let back = wait_for(Duration::from_secs(1), || {
            let s = env.status().ok()?;
            let w = worker(&s, name);
            (w.pid.is_some_and(|p| p != old_pid) && w.restarts == old.restarts + 1).then_some(s)
        });
        let back = back.unwrap_or_else(|| panic!("{name} not back within 1 s: {:?}", env.status()));
        eprintln!("{name}: new process {:?} after SIGKILL", t.elapsed());
        let w = worker(&back, name);
        let exit = w.last_exit.expect("last_exit recorded");
        assert_eq!(exit.signal, Some(9), "{exit:?}");
        assert_eq!(exit.code, None);
        assert_eq!(exit.reason, "killed by SIGKILL");
        env.wait_status(
            Duration::from_secs(10),
            &format!("{name} running again"),
            |s| worker(s, name).state == WorkerState::Running,
        );

        if name == "video" {
            // An attached reader sees new frames, numbered on from the old writer's.
            let next = watcher
                .next_frame(Duration::from_secs(5))
                .expect("frames after the video restart");
            assert!(next > last_seen, "{next} > {last_seen}");
            eprintln!(
                "video: first new frame seen by a reader {:?} after SIGKILL",
                t.elapsed()
            );
            // The readers were not restarted and keep reading.
            let frames_before: Vec<u64> = others
                .iter()
                .map(|(n, _, _)| worker(&env.status().unwrap(), n).stats.frames)
                .collect();
            let s = env.wait_status(
                Duration::from_secs(10),
                "readers' frame counters increasing",
                |s| {
                    others
                        .iter()
                        .zip(&frames_before)
                        .all(|((n, _, _), &f)| worker(s, n).stats.frames > f)
                },
            );
            for (n, pid, restarts) in &others {
                let r = worker(&s, n);
                assert_eq!(r.pid, Some(*pid), "{n} was not restarted");
                assert_eq!(r.restarts, *restarts, "{n} was not restarted");
            }
        }
    }
    stop(&env, &mut sup);
}

#[test]
fn a_crash_loop_backs_off_then_fails_with_the_reason() {
    // A missing camera is retried for ever (see nosignal.rs); a video worker that cannot
    // start for another reason (here its calibration file is missing) still ends in `failed`.
    let env = TestEnv::new("crashloop");
    let mut c = env.config();
    let calibration = env.dir().join("missing-calibration.yml");
    c.video.calibration.file = calibration.display().to_string();
    c.supervisor.restart_max = 3;
    c.supervisor.restart_backoff_initial_ms = 200;
    c.supervisor.restart_backoff_max_ms = 800;
    c.supervisor.restart_window_sec = 60.0;
    let cfg = env.write_config(&c);
    let mut sup = env.start(&cfg);
    let mut saw_backoff = false;
    let s = env.wait_status(Duration::from_secs(30), "video failed", |s| {
        let v = worker(s, "video");
        saw_backoff |= v.state == WorkerState::Backoff;
        v.state == WorkerState::Failed
    });
    assert!(saw_backoff, "went through backoff before failing");
    let v = worker(&s, "video");
    assert_eq!(v.restarts, 3, "restart_max restarts, then failed");
    assert_eq!(v.pid, None);
    let exit = v.last_exit.expect("last_exit");
    assert_eq!(exit.code, Some(config::exit_codes::USAGE), "{exit:?}");
    assert!(
        exit.describe().contains("missing-calibration.yml"),
        "{exit:?}"
    );
    // The readers started with the segments and stay up, showing "no signal".
    let s = env.wait_status(START, "readers running", |s| {
        ["vision", "stream"]
            .iter()
            .all(|r| worker(s, r).state == WorkerState::Running)
    });
    assert_eq!(worker(&s, "video").state, WorkerState::Failed);
    let log = sup.log();
    assert!(
        log.contains("video worker FAILED"),
        "failure is logged loudly:\n{log}"
    );
    // Still failed later: not restarted by itself.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        worker(&env.status().unwrap(), "video").state,
        WorkerState::Failed
    );
    // `restart video` restarts it (exit 0, as the SPEC says) and reports that it failed again:
    // the calibration is still missing.
    let out = env.cli(&cfg, &["restart", "video"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("failed again"), "{out:?}");
    let s = env.status().unwrap();
    assert!(worker(&s, "video").restarts > 3);
    assert_eq!(worker(&s, "video").state, WorkerState::Failed);
    let out = env.cli(&cfg, &["stop"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("stopped"), "{out:?}");
    assert_eq!(
        sup.wait_timeout(Duration::from_secs(15))
            .and_then(|s| s.code()),
        Some(0),
        "clean stop"
    );
    assert!(env.leftover_segments().is_empty());
    assert!(env.live_processes().is_empty());
}

#[test]
fn a_stopped_video_worker_is_restarted_by_the_watchdog() {
    let env = TestEnv::new("sigstop");
    let mut c = env.config();
    c.watchdog.frame_timeout_sec = 1.0;
    let cfg = env.write_config(&c);
    let mut sup = env.start(&cfg);
    let s = env.wait_running(START);
    let video = worker(&s, "video").pid.unwrap();
    let readers: Vec<Option<u32>> = ["vision", "stream"]
        .iter()
        .map(|n| worker(&s, n).pid)
        .collect();
    let t = Instant::now();
    signal(video, libc::SIGSTOP);
    let s = env.wait_status(
        Duration::from_secs(15),
        "video restarted by the watchdog",
        |s| {
            let v = worker(s, "video");
            v.state == WorkerState::Running && v.pid.is_some_and(|p| p != video)
        },
    );
    eprintln!("SIGSTOP to a running new video worker: {:?}", t.elapsed());
    let v = worker(&s, "video");
    let exit = v.last_exit.expect("last_exit");
    assert_eq!(exit.reason, "watchdog: no frame for 1.0s", "{exit:?}");
    assert!(!pid_alive(video), "the stopped worker is gone");
    let now: Vec<Option<u32>> = ["vision", "stream"]
        .iter()
        .map(|n| worker(&s, n).pid)
        .collect();
    assert_eq!(now, readers, "readers not restarted");
    stop(&env, &mut sup);
}

#[test]
fn a_stopped_reader_is_restarted_by_the_heartbeat_watchdog() {
    let env = TestEnv::new("hbstop");
    let mut c = env.config();
    c.watchdog.heartbeat_timeout_sec = 1.0;
    let cfg = env.write_config(&c);
    let mut sup = env.start(&cfg);
    let s = env.wait_running(START);
    let vision = worker(&s, "vision").pid.unwrap();
    let video = worker(&s, "video").pid;
    signal(vision, libc::SIGSTOP);
    let s = env.wait_status(
        Duration::from_secs(15),
        "vision restarted by the watchdog",
        |s| {
            let v = worker(s, "vision");
            v.state == WorkerState::Running && v.pid.is_some_and(|p| p != vision)
        },
    );
    let exit = worker(&s, "vision").last_exit.expect("last_exit");
    assert!(
        exit.reason.starts_with("watchdog: no heartbeat for 1.0s"),
        "{exit:?}"
    );
    assert_eq!(worker(&s, "video").pid, video, "video untouched");
    stop(&env, &mut sup);
}

#[test]
fn restart_command_restarts_one_worker() {
    let env = TestEnv::new("restartcmd");
    let cfg = env.write_config(&env.config());
    let mut sup = env.start(&cfg);
    let s = env.wait_running(START);
    let old = worker(&s, "stream").pid.unwrap();
    let video = worker(&s, "video").pid;
    let out = env.cli(&cfg, &["restart", "stream"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let s = env.status().unwrap();
    let w = worker(&s, "stream");
    assert!(w.pid.is_some_and(|p| p != old), "{w:?}");
    assert!(
        out.stdout
            .contains(&format!("stream worker restarted (pid {})", w.pid.unwrap())),
        "{}",
        out.stdout
    );
    assert!(w
        .last_exit
        .unwrap()
        .reason
        .starts_with("restarted on request"));
    assert_eq!(worker(&s, "video").pid, video);
    stop(&env, &mut sup);
}
