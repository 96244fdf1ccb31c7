//! Starting, reporting and stopping the whole tree.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use billiards_tests::*;

const START: Duration = Duration::from_secs(30);

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn keys(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

fn assert_nothing_left(env: &TestEnv, worker_pids: &[u32]) {
    for &pid in worker_pids {
        assert!(!pid_alive(pid), "worker pid {pid} still alive");
    }
    assert!(
        env.live_processes().is_empty(),
        "processes left: {:?}",
        env.live_processes()
    );
    assert!(
        env.leftover_segments().is_empty(),
        "segments left: {:?}",
        env.leftover_segments()
    );
    assert!(!env.socket.exists(), "control socket left");
    assert!(
        !supervisor::instance::pid_file_for(&env.socket).exists(),
        "pid file left"
    );
    assert!(
        !supervisor::instance::config_file_for(&env.socket).exists(),
        "runtime config left"
    );
}

fn worker_pids(s: &Status) -> Vec<u32> {
    s.workers.iter().filter_map(|w| w.pid).collect()
}

#[test]
fn the_tree_runs_reports_and_stops_on_request() {
    let env = TestEnv::new("runs");
    let cfg = env.write_config(&env.config());
    let mut sup = env.start(&cfg);
    let first = env.wait_running(START);
    let names: Vec<&str> = first.workers.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["video", "vision", "stream"]);
    let pids = worker_pids(&first);
    assert_eq!(pids.len(), 3);
    assert!(pids.iter().all(|&p| pid_alive(p)));
    assert_eq!(first.supervisor.pid, sup.pid());
    assert_eq!(first.supervisor.shm.name, env.shm_name);
    assert_eq!(
        (
            first.supervisor.shm.width,
            first.supervisor.shm.height,
            first.supervisor.shm.slots
        ),
        (320, 240, 3)
    );
    assert_eq!(
        first.supervisor.control_socket,
        env.socket.display().to_string()
    );
    assert_eq!(first.supervisor.config_path, cfg.display().to_string());

    // Frames keep coming, and both readers read them.
    let later = env.wait_status(
        Duration::from_secs(10),
        "frames increasing and read by both readers",
        |s| {
            s.supervisor.shm.frames_published >= first.supervisor.shm.frames_published + 10
                && s.supervisor.shm.readers == 2
                && s.workers.iter().all(|w| w.stats.frames > 0)
        },
    );
    assert_eq!(worker_pids(&later), pids, "nothing restarted");
    assert!(later
        .workers
        .iter()
        .all(|w| w.restarts == 0 && w.last_exit.is_none()));

    // Segments and socket are private to the user.
    let shm_path = std::path::PathBuf::from(&later.supervisor.shm.path);
    assert_eq!(mode(&shm_path), 0o600, "{}", shm_path.display());
    assert_eq!(mode(&env.socket), 0o600);

    // The human table.
    let out = env.cli(&cfg, &["status"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let header = out
        .stdout
        .lines()
        .find(|l| l.starts_with("NAME"))
        .expect("table header");
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        [
            "NAME",
            "STATE",
            "PID",
            "UPTIME",
            "RESTARTS",
            "CPU%",
            "RSS",
            "FPS",
            "LATENCY-p99",
            "LAST-EXIT"
        ]
    );
    for w in ["video", "vision", "stream"] {
        let row = out
            .stdout
            .lines()
            .find(|l| l.starts_with(w))
            .unwrap_or_else(|| panic!("row {w}: {}", out.stdout));
        assert!(row.contains("running"), "{row}");
    }

    // The JSON: exactly the SPEC's keys (workers' stats may carry more).
    let out = env.cli(&cfg, &["status", "--json"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("status --json is JSON");
    assert_eq!(keys(&v), ["supervisor", "workers"].map(String::from).into());
    assert_eq!(
        keys(&v["supervisor"]),
        ["config_path", "control_socket", "pid", "shm", "uptime_s"]
            .map(String::from)
            .into()
    );
    assert_eq!(
        keys(&v["supervisor"]["shm"]),
        [
            "frames_published",
            "height",
            "name",
            "path",
            "readers",
            "size_bytes",
            "slots",
            "width"
        ]
        .map(String::from)
        .into()
    );
    for w in v["workers"].as_array().unwrap() {
        assert_eq!(
            keys(w),
            [
                "cpu_percent",
                "last_exit",
                "name",
                "pid",
                "restarts",
                "rss_bytes",
                "state",
                "stats",
                "uptime_s"
            ]
            .map(String::from)
            .into()
        );
        for k in [
            "fps",
            "frames",
            "dropped",
            "latency_p50_ms",
            "latency_p99_ms",
        ] {
            assert!(w["stats"][k].is_number(), "stats.{k} in {w}");
        }
    }
    let parsed: Status = serde_json::from_value(v).unwrap();
    assert_eq!(parsed.workers.len(), 3);

    // `stop` waits until the tree is down.
    let t = Instant::now();
    let out = env.cli(&cfg, &["stop"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout.contains(&format!("pid {}", sup.pid())),
        "{}",
        out.stdout
    );
    let status = sup
        .wait_timeout(Duration::from_secs(5))
        .expect("supervisor exits after stop");
    assert_eq!(status.code(), Some(0));
    eprintln!("stop took {:?}", t.elapsed());
    assert_nothing_left(&env, &pids);
}

#[test]
fn sigterm_stops_everything_within_2s() {
    let env = TestEnv::new("sigterm");
    let cfg = env.write_config(&env.config());
    let mut sup = env.start(&cfg);
    let s = env.wait_running(START);
    let pids = worker_pids(&s);
    let t = Instant::now();
    sup.signal(libc::SIGTERM);
    let status = sup
        .wait_timeout(Duration::from_secs(2))
        .expect("supervisor exits within 2 s of SIGTERM");
    eprintln!("SIGTERM to exit: {:?}", t.elapsed());
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    assert_nothing_left(&env, &pids);
    let log = sup.log();
    let line_of = |w: &str| {
        log.lines()
            .position(|l| l.contains(&format!("{w} worker (pid")) && l.contains("stopped ("))
            .unwrap_or_else(|| panic!("no stop line for {w}:\n{log}"))
    };
    assert!(
        line_of("stream") < line_of("video"),
        "readers stop before the writer:\n{log}"
    );
    assert!(
        line_of("vision") < line_of("video"),
        "readers stop before the writer:\n{log}"
    );
}

#[test]
fn sigkill_of_the_supervisor_takes_the_workers_down_and_start_recovers() {
    let env = TestEnv::new("sigkill");
    let cfg = env.write_config(&env.config());
    let mut sup = env.start(&cfg);
    let s = env.wait_running(START);
    let pids = worker_pids(&s);
    sup.signal(libc::SIGKILL);
    sup.wait_timeout(Duration::from_secs(5)).expect("reaped");
    let t = Instant::now();
    let gone = wait_for(Duration::from_secs(1), || {
        pids.iter().all(|&p| !pid_alive(p)).then_some(())
    });
    assert!(
        gone.is_some(),
        "workers still alive 1 s after the supervisor died: {:?}",
        pids.iter().filter(|&&p| pid_alive(p)).collect::<Vec<_>>()
    );
    eprintln!(
        "workers gone {:?} after the supervisor's SIGKILL",
        t.elapsed()
    );
    // What a killed supervisor leaves: the socket file, pid file and a segment.
    assert!(env.socket.exists());

    let mut again = env.start(&cfg);
    let s2 = env.wait_running(START);
    assert_eq!(s2.supervisor.pid, again.pid());
    assert!(s2.workers.iter().all(|w| w.restarts == 0));
    let log = again.log();
    assert!(log.contains("stale"), "the takeover is logged:\n{log}");
    let pids2 = worker_pids(&s2);
    assert_eq!(again.terminate(Duration::from_secs(10)), Some(0));
    assert_nothing_left(&env, &pids2);
}

#[test]
fn a_second_start_refuses_and_names_the_running_pid() {
    let env = TestEnv::new("second");
    let cfg = env.write_config(&env.config());
    let mut sup = env.start(&cfg);
    let s = env.wait_running(START);
    let out = env.cli(&cfg, &["start"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    let expected = format!(
        "billiards-supervisor is already running (pid {}, socket {})",
        sup.pid(),
        env.socket.display()
    );
    assert!(out.stderr.contains(&expected), "{}", out.stderr);
    // The running tree is untouched.
    let after = env.wait_running(Duration::from_secs(5));
    assert_eq!(worker_pids(&after), worker_pids(&s));
    assert!(env.socket.exists());
    assert_eq!(sup.terminate(Duration::from_secs(10)), Some(0));
}

#[test]
fn a_disabled_worker_is_not_started() {
    let env = TestEnv::new("disabled");
    let mut c = env.config();
    c.vision.enabled = false;
    let cfg = env.write_config(&c);
    let mut sup = env.start(&cfg);
    let s = env.wait_running(START);
    let names: Vec<&str> = s.workers.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["video", "stream"]);
    assert!(
        !std::path::Path::new("/dev/shm")
            .join(&env.detections_name)
            .exists(),
        "no detections segment"
    );
    // Not a worker this tree runs: a usage error, like an unknown worker.
    let out = env.cli(&cfg, &["restart", "vision"]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.contains("vision.enabled = false"),
        "{}",
        out.stderr
    );
    assert_eq!(sup.terminate(Duration::from_secs(10)), Some(0));
    assert!(env.leftover_segments().is_empty());
}

#[test]
fn systemd_is_told_ready_status_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let env = TestEnv::new("notify");
    let cfg = env.write_config(&env.config());
    let notify = env.dir().join("notify.sock");
    let listener = UnixDatagram::bind(&notify).unwrap();
    listener
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut sup = env.start_with(
        &cfg,
        &[
            ("NOTIFY_SOCKET", notify.to_str().unwrap()),
            ("WATCHDOG_USEC", "1000000"),
        ],
    );
    let mut got: Vec<String> = Vec::new();
    let recv_until = |got: &mut Vec<String>, want: &str, timeout: Duration| {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let mut buf = [0u8; 4096];
            if let Ok(n) = listener.recv(&mut buf) {
                got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                if got.last().is_some_and(|m| m.starts_with(want)) {
                    return true;
                }
            }
        }
        false
    };
    assert!(
        recv_until(&mut got, "READY=1", START),
        "READY=1 not sent: {got:?}"
    );
    let s = env.status().unwrap();
    assert!(
        s.workers.iter().all(|w| w.state == WorkerState::Running),
        "READY=1 only once all run: {s:?}"
    );
    assert!(
        recv_until(&mut got, "WATCHDOG=1", Duration::from_secs(3)),
        "WATCHDOG=1 not sent: {got:?}"
    );
    assert!(
        got.iter()
            .any(|m| m == "STATUS=video running, vision running, stream running"),
        "{got:?}"
    );
    sup.signal(libc::SIGTERM);
    assert!(
        recv_until(&mut got, "STOPPING=1", Duration::from_secs(5)),
        "STOPPING=1 not sent: {got:?}"
    );
    assert_eq!(
        sup.wait_timeout(Duration::from_secs(10))
            .and_then(|s| s.code()),
        Some(0)
    );
}

#[test]
fn a_second_tree_with_the_same_segment_names_refuses_and_leaves_the_first_alone() {
    let env = TestEnv::new("samename");
    let cfg = env.write_config(&env.config());
    let mut sup = env.start(&cfg);
    let s = env.wait_running(START);
    // Same segments, another socket and port: a second tree must not take them over.
    let mut other = env.config();
    other.supervisor.control_socket = env.dir().join("other.sock").display().to_string();
    other.stream.listen = format!("127.0.0.1:{}", billiards_tests::free_port());
    let other_cfg = env.write_config_as(&other, "other.toml");
    let out = env.cli(&other_cfg, &["start"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("is in use by a live"), "{}", out.stderr);
    assert!(
        out.stderr.contains(&env.config().video.shm_name),
        "{}",
        out.stderr
    );
    let after = env.wait_running(Duration::from_secs(5));
    assert_eq!(worker_pids(&after), worker_pids(&s));
    assert!(after.supervisor.shm.frames_published >= s.supervisor.shm.frames_published);
    assert_eq!(sup.terminate(Duration::from_secs(10)), Some(0));
}

#[test]
fn a_closed_log_pipe_does_not_take_the_supervisor_down() {
    let env = TestEnv::new("closedpipe");
    let cfg = env.write_config(&env.config());
    // As in `billiards-supervisor start 2>&1 | head`: the reader of the logs goes away.
    let mut child = std::process::Command::new(billiards_tests::binary("billiards-supervisor"))
        .arg("start")
        .arg("--config")
        .arg(&cfg)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    drop(child.stderr.take());
    env.wait_running(START);
    // Logging goes on (worker lines, status) while nobody reads it.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the supervisor died with its log pipe closed"
    );
    billiards_tests::signal(child.id(), libc::SIGTERM);
    let code = billiards_tests::wait_for(Duration::from_secs(10), || child.try_wait().unwrap())
        .and_then(|s| s.code());
    assert_eq!(code, Some(0));
    assert!(
        env.leftover_segments().is_empty(),
        "{:?}",
        env.leftover_segments()
    );
    assert!(!env.socket.exists());
}
