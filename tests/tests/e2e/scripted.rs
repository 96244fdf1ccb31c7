//! Supervisor behaviour that needs a worker misbehaving on purpose, with the scripted
//! stand-in worker (`billiards-fake-worker`, run under the real workers' names).

use std::time::{Duration, Instant};

use billiards_tests::*;

#[test]
fn a_worker_ignoring_sigterm_is_killed_after_the_grace() {
    let mut env = TestEnv::new("graceful");
    env.use_fake_workers();
    let mut c = env.config();
    c.supervisor.shutdown_timeout_sec = 1.0;
    let cfg = env.write_config(&c);
    let mut sup = env.start_with(&cfg, &[("FAKE_IGNORE_SIGTERM", "stream")]);
    env.wait_running(Duration::from_secs(15));
    let t = Instant::now();
    sup.signal(libc::SIGTERM);
    let status = sup
        .wait_timeout(Duration::from_secs(10))
        .expect("supervisor exits");
    let took = t.elapsed();
    assert_eq!(status.code(), Some(0));
    assert!(
        took >= Duration::from_millis(900),
        "waited the grace: {took:?}"
    );
    assert!(took < Duration::from_secs(4), "then killed: {took:?}");
    let log = sup.log();
    assert!(
        log.contains("stream worker (pid") && log.contains("sending SIGKILL"),
        "{log}"
    );
    assert!(env.live_processes().is_empty());
    assert!(env.leftover_segments().is_empty());
}

#[test]
fn a_second_signal_during_the_stop_kills_at_once() {
    let mut env = TestEnv::new("secondsig");
    env.use_fake_workers();
    let mut c = env.config();
    c.supervisor.shutdown_timeout_sec = 60.0;
    let cfg = env.write_config(&c);
    let mut sup = env.start_with(&cfg, &[("FAKE_IGNORE_SIGTERM", "stream,video")]);
    env.wait_running(Duration::from_secs(15));
    sup.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        sup.wait_timeout(Duration::ZERO).is_none(),
        "still waiting for the grace"
    );
    let t = Instant::now();
    sup.signal(libc::SIGINT);
    let status = sup
        .wait_timeout(Duration::from_secs(5))
        .expect("exits after the second signal");
    assert_eq!(status.code(), Some(0));
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(
        env.live_processes().is_empty(),
        "{:?}",
        env.live_processes()
    );
    assert!(
        env.leftover_segments().is_empty(),
        "{:?}",
        env.leftover_segments()
    );
}

#[test]
fn a_worker_exiting_by_itself_is_restarted() {
    let mut env = TestEnv::new("selfexit");
    env.use_fake_workers();
    let cfg = env.write_config(&env.config());
    let mut sup = env.start_with(&cfg, &[("FAKE_EXIT_AFTER_MS", "vision:300")]);
    let s = env.wait_status(Duration::from_secs(15), "vision restarted twice", |s| {
        s.worker("vision").is_some_and(|w| w.restarts >= 2)
    });
    let v = s.worker("vision").unwrap();
    let exit = v.last_exit.as_ref().unwrap();
    assert_eq!(exit.code, Some(0));
    assert_eq!(
        exit.reason,
        "exited with code 0 without being asked to stop"
    );
    assert_eq!(sup.terminate(Duration::from_secs(10)), Some(0));
}

#[test]
fn status_reports_cpu_and_memory_of_each_worker() {
    let mut env = TestEnv::new("sysinfo");
    env.use_fake_workers();
    let cfg = env.write_config(&env.config());
    let mut sup = env.start(&cfg);
    env.wait_running(Duration::from_secs(15));
    let s = env.wait_status(Duration::from_secs(10), "rss and fps reported", |s| {
        s.workers
            .iter()
            .all(|w| w.rss_bytes > 0 && w.stats.fps > 5.0)
    });
    for w in &s.workers {
        assert!(w.cpu_percent >= 0.0 && w.cpu_percent < 200.0, "{w:?}");
        assert!(w.rss_bytes < 1 << 30, "{w:?}");
    }
    assert_eq!(sup.terminate(Duration::from_secs(10)), Some(0));
}
