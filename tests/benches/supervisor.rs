//! Supervisor figures (not a test: prints numbers). Build the release binaries first:
//!
//! ```sh
//! cargo build --release -p billiards-supervisor -p billiards-video-worker \
//!     -p billiards-vision-worker -p billiards-stream-worker
//! cargo bench -p billiards-tests --bench supervisor [-- --cycles 100 --kills 20]
//! ```
//!
//! Measures, with the real tree and the default config (1280x720 synthetic at 30 fps, default
//! backoff): SIGKILL of the video worker to the first frame of the new writer seen by an
//! attached reader (each kill meets the first backoff delay: the accounting is reset with
//! `restart video` between kills); SIGTERM to the supervisor's exit; N start/stop cycles checking that no
//! segment, socket or process is left; the supervisor's own CPU and RSS while idle.

use std::time::{Duration, Instant};

use billiards_tests::*;

const START: Duration = Duration::from_secs(60);

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn summary(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mean = v.iter().map(|&d| ms(d)).sum::<f64>() / v.len() as f64;
    println!(
        "{name}: n={} min={:.1}ms median={:.1}ms mean={mean:.1}ms max={:.1}ms",
        v.len(),
        ms(v[0]),
        ms(v[v.len() / 2]),
        ms(v[v.len() - 1])
    );
}

fn realistic(env: &TestEnv) -> Config {
    let mut c = env.config();
    c.video.width = 1280;
    c.video.height = 720;
    c.supervisor.shutdown_timeout_sec = 10.0;
    c
}

fn kill_to_frame(kills: usize) {
    let env = TestEnv::new("bench-kill");
    let cfg = env.write_config(&realistic(&env));
    let mut sup = env.start(&cfg);
    env.wait_running(START);
    let mut watcher = FrameWatcher::attach(&env, "bench");
    let mut times = Vec::new();
    for i in 0..kills {
        if i > 0 {
            // Consecutive crashes back off exponentially (until 30 s of healthy running);
            // `restart video` resets the accounting, so every kill meets the first delay.
            match control::request(
                &env.socket,
                &Request::Restart {
                    worker: supervisor::WorkerName::Video,
                },
                Duration::from_secs(5),
            ) {
                Ok(Response::Ok) => {}
                other => panic!("restart video: {other:?}"),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let s = env.wait_running(START);
        std::thread::sleep(Duration::from_millis(300));
        let pid = s.worker("video").and_then(|w| w.pid).expect("video pid");
        // Catch up with the newest frame so that the one we wait for is the new writer's.
        let _ = watcher.catch_up();
        let before = watcher
            .next_meta(Duration::from_secs(5))
            .expect("frames flow");
        let t = Instant::now();
        signal(pid, libc::SIGKILL);
        loop {
            let m = watcher
                .next_meta(Duration::from_secs(10))
                .expect("a frame after the restart");
            if m.writer_generation > before.writer_generation {
                times.push(t.elapsed());
                break;
            }
        }
    }
    summary("SIGKILL video -> first new frame at a reader", times);
    let _ = watcher.catch_up();
    sup.signal(libc::SIGTERM);
    sup.wait_timeout(Duration::from_secs(30)).expect("stopped");
}

fn sigterm_to_exit(runs: usize) {
    let mut times = Vec::new();
    for _ in 0..runs {
        let env = TestEnv::new("bench-term");
        let cfg = env.write_config(&realistic(&env));
        let mut sup = env.start(&cfg);
        env.wait_running(START);
        std::thread::sleep(Duration::from_millis(500));
        let t = Instant::now();
        sup.signal(libc::SIGTERM);
        let status = sup.wait_timeout(Duration::from_secs(30)).expect("exit");
        times.push(t.elapsed());
        assert_eq!(status.code(), Some(0));
    }
    summary("SIGTERM -> supervisor exit", times);
}

fn cycles(n: usize) {
    let env = TestEnv::new("bench-cycles");
    let cfg = env.write_config(&env.config());
    let t = Instant::now();
    let mut per = Vec::new();
    for i in 0..n {
        let c0 = Instant::now();
        let mut sup = env.start(&cfg);
        env.wait_running(START);
        if i % 2 == 0 {
            sup.signal(libc::SIGTERM);
        } else {
            let out = env.cli(&cfg, &["stop"]);
            assert_eq!(out.code, Some(0), "{out:?}");
        }
        let status = sup.wait_timeout(Duration::from_secs(30)).expect("exit");
        assert_eq!(status.code(), Some(0), "cycle {i}");
        drop(sup);
        assert!(
            env.leftover_segments().is_empty(),
            "cycle {i}: {:?}",
            env.leftover_segments()
        );
        assert!(!env.socket.exists(), "cycle {i}: socket left");
        let left = wait_for(Duration::from_secs(1), || {
            env.live_processes().is_empty().then_some(())
        });
        assert!(
            left.is_some(),
            "cycle {i}: processes left: {:?}",
            env.live_processes()
        );
        per.push(c0.elapsed());
    }
    println!(
        "{n} start/stop cycles: {:.1}s total, no leftover segment, socket or process",
        t.elapsed().as_secs_f64()
    );
    summary("one start (all running) + stop cycle", per);
}

fn proc_cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields after the command: state is [0]; utime is field 14 of the line, [11] here.
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn idle(seconds: u64) {
    let env = TestEnv::new("bench-idle");
    let cfg = env.write_config(&realistic(&env));
    let mut sup = env.start(&cfg);
    env.wait_running(START);
    std::thread::sleep(Duration::from_secs(2));
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let pid = sup.pid();
    let c0 = proc_cpu_ticks(pid);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let cpu = (proc_cpu_ticks(pid) - c0) as f64 / hz / t0.elapsed().as_secs_f64() * 100.0;
    let rss = rss_kib(pid);
    // With a client polling status once a second, as a dashboard would.
    let c1 = proc_cpu_ticks(pid);
    let t1 = Instant::now();
    while t1.elapsed() < Duration::from_secs(seconds) {
        let _ = env.status();
        std::thread::sleep(Duration::from_secs(1));
    }
    let cpu_polled = (proc_cpu_ticks(pid) - c1) as f64 / hz / t1.elapsed().as_secs_f64() * 100.0;
    println!(
        "supervisor idle over {seconds}s: CPU {cpu:.2}% of one core, RSS {:.1} MiB; with status polled 1/s: CPU {cpu_polled:.2}%",
        rss as f64 / 1024.0
    );
    sup.signal(libc::SIGTERM);
    sup.wait_timeout(Duration::from_secs(30)).expect("stopped");
}

fn main() {
    let kills = arg("--kills", 20);
    let terms = arg("--terms", 10);
    let n = arg("--cycles", 100);
    let idle_s = arg("--idle", 10) as u64;
    let fake = std::env::var("BILLIARDS_TESTS_FAKE_WORKERS").is_ok_and(|v| v == "1");
    for b in TREE_BINARIES.iter().take(if fake { 1 } else { 4 }) {
        binary(b);
    }
    if fake {
        println!(
            "NOTE: scripted stand-in workers (BILLIARDS_TESTS_FAKE_WORKERS=1), not the real ones"
        );
    }
    println!("binaries from {}", target_dir().display());
    kill_to_frame(kills);
    sigterm_to_exit(terms);
    idle(idle_s);
    cycles(n);
}
