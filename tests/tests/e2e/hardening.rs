//! Process hardening (issue 15) with the scripted stand-in workers: a stderr nobody reads must
//! not stall the supervisor, whatever a dead worker leaves in its group is ended before it is
//! reaped, and what a SIGKILLed supervisor leaves (runtime config with the token, segments)
//! is replaced at the next start.

use std::process::Command;
use std::time::Duration;

use billiards_tests::*;
use supervisor::status::WorkerState;

fn worker_pid(s: &supervisor::Status, name: &str) -> Option<u32> {
    s.workers.iter().find(|w| w.name == name)?.pid
}

#[test]
fn a_stalled_stderr_reader_does_not_stall_the_supervisor() {
    let mut env = TestEnv::new("stalledlog");
    env.use_fake_workers();
    let cfg = env.write_config(&env.config());
    let mut cmd = Command::new(binary("billiards-supervisor"));
    cmd.arg("start")
        .arg("--config")
        .arg(&cfg)
        .env("FAKE_CHATTER", "vision");
    let log = env.dir().join("stalled-stdout.log");
    // `_stderr` is held open and never read: the pipe fills within milliseconds.
    let (_sup, _stderr) = Proc::spawn_stderr_unread(cmd, &log);
    let first = env.wait_running(Duration::from_secs(30));
    let video = worker_pid(&first, "video").expect("video pid");
    // Long after the pipe is full (64 KiB of 200-byte lines), status still answers...
    std::thread::sleep(Duration::from_secs(2));
    env.status().expect("status answers while stderr is full");
    // ...and a killed worker is still restarted (the restart is logged to the full stderr).
    signal(video, libc::SIGKILL);
    env.wait_status(Duration::from_secs(30), "video restarted", |s| {
        let w = s.workers.iter().find(|w| w.name == "video");
        w.is_some_and(|w| w.restarts >= 1 && w.state == WorkerState::Running)
            && worker_pid(s, "video").is_some_and(|p| p != video)
    });
}

#[test]
fn what_a_dead_worker_left_in_its_group_is_killed_before_it_is_reaped() {
    let mut env = TestEnv::new("grandchild");
    env.use_fake_workers();
    let cfg = env.write_config(&env.config());
    let sup = env.start_with(&cfg, &[("FAKE_GRANDCHILD", "stream")]);
    let first = env.wait_running(Duration::from_secs(30));
    let stream = worker_pid(&first, "stream").expect("stream pid");
    let grandchild = wait_for(Duration::from_secs(10), || {
        sup.log().lines().find_map(|l| {
            l.split("grandchild pid ")
                .nth(1)?
                .trim()
                .parse::<u32>()
                .ok()
        })
    })
    .expect("the grandchild's pid in the log");
    assert!(pid_alive(grandchild));
    signal(stream, libc::SIGKILL);
    env.wait_status(Duration::from_secs(30), "stream restarted", |s| {
        worker_pid(s, "stream").is_some_and(|p| p != stream)
    });
    // The grandchild shared the dead worker's group: it was killed with it, not left running
    // (and not signalled later, when its group id might name someone else).
    let gone = wait_for(Duration::from_secs(10), || {
        (!pid_alive(grandchild)).then_some(())
    });
    assert!(gone.is_some(), "grandchild {grandchild} still alive");
}

#[test]
fn leftovers_of_a_sigkilled_supervisor_are_replaced_at_the_next_start() {
    use std::os::unix::fs::MetadataExt;
    let mut env = TestEnv::new("leftovers");
    env.use_fake_workers();
    let mut c = env.config();
    c.stream.auth_token = "first-secret".into();
    let cfg = env.write_config(&c);
    let mut sup = env.start(&cfg);
    env.wait_running(Duration::from_secs(30));
    sup.signal(libc::SIGKILL);
    sup.wait_timeout(Duration::from_secs(5)).expect("reaped");
    let runtime = supervisor::instance::config_file_for(&env.socket);
    let left = std::fs::read_to_string(&runtime)
        .expect("a SIGKILLed supervisor leaves its runtime config");
    assert!(left.contains("first-secret"), "{left}");
    // Loosen the leftover: a file rewritten in place would keep this mode, a new one is 0600.
    std::fs::set_permissions(
        &runtime,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    assert!(!env.leftover_segments().is_empty(), "and its segments");
    // Its fake workers die with it (parent-death signal) or notice the dead parent.
    wait_for(Duration::from_secs(10), || {
        env.live_processes().is_empty().then_some(())
    })
    .expect("workers gone");

    c.stream.auth_token = "second-secret".into();
    let cfg = env.write_config(&c);
    let mut again = env.start(&cfg);
    env.wait_running(Duration::from_secs(30));
    let new = std::fs::metadata(&runtime).unwrap();
    assert_eq!(
        new.mode() & 0o777,
        0o600,
        "the runtime config was recreated, not rewritten"
    );
    let text = std::fs::read_to_string(&runtime).unwrap();
    assert!(
        text.contains("second-secret") && !text.contains("first-secret"),
        "{text}"
    );
    assert!(again.log().contains("stale"), "the takeover is logged");
    assert_eq!(again.terminate(Duration::from_secs(15)), Some(0));
    assert!(!runtime.exists(), "removed on a clean stop");
    assert!(
        env.leftover_segments().is_empty(),
        "{:?}",
        env.leftover_segments()
    );
}
