//! The command line without a running tree: config errors, "not running", check-config.

use billiards_tests::*;

#[test]
fn a_bad_config_exits_2_naming_the_file_and_the_key() {
    let env = TestEnv::new("badcfg");
    let slots = env.dir().join("slots.toml");
    std::fs::write(&slots, "[video]\nslots = 1\n").unwrap();
    let unknown = env.dir().join("unknown.toml");
    std::fs::write(&unknown, "[video]\nshm_name = \"x\"\nframerate = 30\n").unwrap();
    for (file, key) in [(&slots, "video.slots"), (&unknown, "video.framerate")] {
        for cmd in ["start", "check-config", "status", "stop"] {
            let out = env.cli(file, &[cmd]);
            assert_eq!(out.code, Some(2), "{cmd} with {}: {out:?}", file.display());
            assert!(
                out.stderr.contains(key),
                "{cmd}: stderr names {key}: {}",
                out.stderr
            );
            assert!(
                out.stderr.contains(&file.display().to_string()),
                "{cmd}: stderr names the file: {}",
                out.stderr
            );
        }
    }
    let missing = env.dir().join("missing.toml");
    let out = env.cli(&missing, &["start"]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("missing.toml"), "{}", out.stderr);
    // Nothing was started or created.
    assert!(!env.socket.exists());
    assert!(env.leftover_segments().is_empty());
}

#[test]
fn commands_without_a_running_supervisor_exit_3() {
    let env = TestEnv::new("notrunning");
    let cfg = env.write_config(&env.config());
    let expected = format!("no supervisor running (socket {})", env.socket.display());
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["stop"],
        &["restart", "video"],
    ] {
        let out = env.cli(&cfg, args);
        assert_eq!(out.code, Some(3), "{args:?}: {out:?}");
        assert!(out.stderr.contains(&expected), "{args:?}: {}", out.stderr);
        assert!(out.stdout.is_empty(), "{args:?}: {}", out.stdout);
    }
    // A stale socket file (a supervisor that died) is "not running" too.
    drop(std::os::unix::net::UnixListener::bind(&env.socket).unwrap());
    let out = env.cli(&cfg, &["status"]);
    assert_eq!(out.code, Some(3), "{out:?}");
    assert!(out.stderr.contains(&expected), "{}", out.stderr);
}

#[test]
fn unknown_worker_is_a_usage_error() {
    let env = TestEnv::new("unknownworker");
    let cfg = env.write_config(&env.config());
    let out = env.cli(&cfg, &["restart", "audio"]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("audio"), "{}", out.stderr);
    assert!(
        out.stderr.contains("video, vision, stream"),
        "{}",
        out.stderr
    );
    let out = env.cli(&cfg, &["frobnicate"]);
    assert_eq!(out.code, Some(2), "{out:?}");
}

#[test]
fn check_config_prints_the_effective_config() {
    let env = TestEnv::new("checkcfg");
    let mut c = env.config();
    c.video.fps = 25;
    c.stream.enabled = false;
    let cfg = env.write_config(&c);
    let out = env.cli(&cfg, &["check-config"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let printed =
        Config::from_toml_str(&out.stdout, "stdout").expect("check-config prints valid TOML");
    assert_eq!(printed, c);
    assert!(
        out.stdout.contains(&cfg.display().to_string()),
        "names its origin: {}",
        out.stdout
    );
}

#[test]
fn a_config_writable_by_others_is_refused_with_exit_2() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new("planted");
    let cfg = env.write_config(&env.config());
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o666)).unwrap();
    for cmd in ["start", "check-config", "status"] {
        let out = env.cli(&cfg, &[cmd]);
        assert_eq!(out.code, Some(2), "{cmd}: {out:?}");
        assert!(
            out.stderr
                .contains(&format!("{}: refusing config file", cfg.display())),
            "{cmd}: {}",
            out.stderr
        );
        assert!(
            out.stderr
                .contains("writable by group and others (mode 666)"),
            "{cmd}: {}",
            out.stderr
        );
    }
    assert!(!env.socket.exists(), "nothing was started");
    assert!(env.leftover_segments().is_empty());
}

#[test]
fn a_worker_dir_writable_by_others_is_refused_with_exit_2() {
    use std::os::unix::fs::PermissionsExt;
    let mut env = TestEnv::new("planteddir");
    env.use_fake_workers();
    let dir = env.worker_dir.clone().unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let cfg = env.write_config(&env.config());
    let out = env.cli(&cfg, &["start"]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("{}: refusing worker directory", dir.display())),
        "{}",
        out.stderr
    );
    assert!(!env.socket.exists(), "socket removed");
    assert!(env.leftover_segments().is_empty());
    assert!(env.live_processes().is_empty(), "no worker was started");
}

#[test]
fn a_missing_worker_binary_is_a_clear_error_and_leaves_nothing() {
    let env = TestEnv::new("nobinary");
    let mut c = env.config();
    let empty = env.dir().join("empty-bin");
    std::fs::create_dir_all(&empty).unwrap();
    c.supervisor.worker_dir = empty.display().to_string();
    let cfg = env.write_config(&c);
    let out = env.cli(&cfg, &["start"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    let bin = empty.join("billiards-video-worker");
    assert!(
        out.stderr.contains(&bin.display().to_string()),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("supervisor.worker_dir"),
        "{}",
        out.stderr
    );
    assert!(!env.socket.exists(), "socket removed");
    assert!(
        env.leftover_segments().is_empty(),
        "{:?}",
        env.leftover_segments()
    );
    assert!(
        !supervisor::instance::pid_file_for(&env.socket).exists(),
        "pid file removed"
    );
}
