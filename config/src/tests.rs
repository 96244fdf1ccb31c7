use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(text, "billiards.toml")
}

fn err(text: &str) -> String {
    parse(text)
        .expect_err("config should be rejected")
        .to_string()
}

#[test]
fn empty_document_gives_spec_defaults() {
    let c = parse("").unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(c.video.shm_name, "billiards_video");
    assert_eq!(c.video.slots, 3);
    assert_eq!(
        (c.video.width, c.video.height, c.video.fps),
        (1280, 720, 30)
    );
    assert_eq!(c.video.attach_timeout_sec, 5.0);
    assert_eq!(c.video.source.kind, SourceKind::Synthetic);
    assert!(c.video.source.looping);
    assert_eq!(c.video.source.seed, 1);
    assert!(c.vision.enabled);
    assert_eq!(c.vision.detections_shm_name, "billiards_detections");
    assert_eq!(c.stream.listen, "127.0.0.1:8080");
    assert_eq!(c.stream.jpeg_quality, 85);
    assert!(c.stream.h264);
    assert_eq!(c.stream.h264_bitrate_kbps, 2500);
    assert_eq!(c.stream.h264_keyframe_sec, 2.0);
    assert_eq!(c.stream.max_clients, 64);
    assert_eq!(c.supervisor.shutdown_timeout_sec, 10.0);
    assert_eq!(c.supervisor.restart_backoff_initial_ms, 100);
    assert_eq!(c.supervisor.restart_backoff_max_ms, 5000);
    assert_eq!(c.supervisor.restart_max, 10);
    assert_eq!(c.watchdog.frame_timeout_sec, 2.0);
    assert_eq!(c.watchdog.heartbeat_timeout_sec, 5.0);
}

#[test]
fn partial_document_keeps_other_defaults() {
    let c = parse(
        "[video]\nslots = 4\n[video.source]\nkind = \"file\"\npath = \"a.mp4\"\nloop = false\n",
    )
    .unwrap();
    assert_eq!(c.video.slots, 4);
    assert_eq!(c.video.width, 1280);
    assert_eq!(c.video.source.kind, SourceKind::File);
    assert!(!c.video.source.looping);
}

#[test]
fn slots_below_two_names_file_key_and_rule() {
    assert_eq!(
        err("[video]\nslots = 1\n"),
        "billiards.toml: video.slots = 1: must be at least 2"
    );
}

#[test]
fn every_broken_rule_is_listed() {
    let e = err("[video]\nslots = 1\nwidth = 641\n[stream]\njpeg_quality = 0\n");
    assert!(e.contains("video.slots = 1: must be at least 2"), "{e}");
    assert!(e.contains("video.width = 641: must be even"), "{e}");
    assert!(
        e.contains("stream.jpeg_quality = 0: must be between 1 and 100"),
        "{e}"
    );
    assert_eq!(e.lines().count(), 3, "{e}");
}

#[test]
fn unknown_key_is_an_error_with_location() {
    let e = err("[video]\nslots = 3\nslot = 4\n");
    assert!(
        e.starts_with("billiards.toml: video.slot: unknown key"),
        "{e}"
    );
    assert!(e.contains("line 3"), "{e}");
}

#[test]
fn unknown_table_is_an_error() {
    let e = err("[videos]\nslots = 3\n");
    assert!(e.contains("videos: unknown key"), "{e}");
}

#[test]
fn unknown_nested_key_is_an_error() {
    let e = err("[video.source]\nkinds = \"file\"\n");
    assert!(e.contains("video.source.kinds: unknown key"), "{e}");
}

#[test]
fn wrong_type_names_key_and_position() {
    let e = err("[video]\nfps = \"thirty\"\n");
    assert!(
        e.starts_with("billiards.toml: video.fps: invalid type"),
        "{e}"
    );
    assert!(e.contains("line 2, column 7"), "{e}");
}

#[test]
fn bad_source_kind_is_named() {
    let e = err("[video.source]\nkind = \"webcam\"\n");
    assert!(e.contains("video.source.kind"), "{e}");
    assert!(e.contains("webcam"), "{e}");
}

#[test]
fn syntax_error_gives_line() {
    let e = err("[video\nslots = 3\n");
    assert!(e.starts_with("billiards.toml: "), "{e}");
    assert!(e.contains("line 1"), "{e}");
}

#[test]
fn negative_integer_is_rejected() {
    let e = err("[video]\nwidth = -2\n");
    assert!(e.contains("video.width"), "{e}");
}

#[test]
fn rules_on_video() {
    for (doc, want) in [
        (
            "[video]\nwidth = 0",
            "video.width = 0: must be greater than 0",
        ),
        ("[video]\nheight = 721", "video.height = 721: must be even"),
        (
            "[video]\nwidth = 10000",
            "video.width = 10000: must be at most 7680",
        ),
        (
            "[video]\nfps = 0",
            "video.fps = 0: must be between 1 and 240",
        ),
        (
            "[video]\nfps = 241",
            "video.fps = 241: must be between 1 and 240",
        ),
        (
            "[video]\nslots = 65",
            "video.slots = 65: must be at most 64",
        ),
        (
            "[video]\nattach_timeout_sec = 0",
            "video.attach_timeout_sec = 0: must be a number greater than 0",
        ),
        (
            "[video]\nattach_timeout_sec = -1.5",
            "video.attach_timeout_sec = -1.5: must be a number greater than 0",
        ),
        (
            "[video]\nattach_timeout_sec = nan",
            "video.attach_timeout_sec = NaN: must be a number greater than 0",
        ),
        (
            "[video]\nshm_name = \"\"",
            "video.shm_name = \"\": must not be empty",
        ),
        (
            "[video]\nshm_name = \"a/b\"",
            "video.shm_name = \"a/b\": must use only",
        ),
        (
            "[video]\nshm_name = \".x\"",
            "video.shm_name = \".x\": must use only",
        ),
        (
            "[video.source]\nkind = \"file\"",
            "video.source.path = \"\": must name a video file",
        ),
        (
            "[video.source]\nkind = \"camera\"\npath = \"video0\"",
            "video.source.path = \"video0\": must be a device path",
        ),
    ] {
        let e = err(doc);
        assert!(e.contains(want), "{doc:?}: got {e:?}, want {want:?}");
    }
}

#[test]
fn rules_on_vision_stream_supervisor_watchdog() {
    for (doc, want) in [
        ("[vision]\ndetections_shm_name = \"billiards_video\"", "must differ from video.shm_name"),
        ("[stream]\nlisten = \"localhost\"", "stream.listen = \"localhost\": must be a socket address"),
        ("[stream]\nlisten = \"localhost:99999\"", "stream.listen = \"localhost:99999\": must be a socket address"),
        ("[stream]\nlisten = \"300.1.1.1:80\"", "stream.listen = \"300.1.1.1:80\": must be a socket address"),
        ("[stream]\nlisten = \"bad host:80\"", "stream.listen = \"bad host:80\": must be a socket address"),
        ("[stream]\njpeg_quality = 101", "stream.jpeg_quality = 101: must be between 1 and 100"),
        ("[stream]\nmax_fps = 0", "stream.max_fps = 0: must be between 1 and 60"),
        ("[stream]\nmax_clients = 0", "stream.max_clients = 0: must be between 1 and 10000"),
        ("[stream]\nauth_token = \"a b\"", "stream.auth_token"),
        ("[stream]\nallowed_hosts = [\"cam.local:8080\"]", "stream.allowed_hosts = \"cam.local:8080\": must be a host name without port"),
        ("[stream]\nallowed_hosts = [\"\"]", "stream.allowed_hosts = \"\": must be a host name"),
        ("[stream]\nallowed_hosts = [\"a b\"]", "stream.allowed_hosts = \"a b\": must be a host name"),
        ("[stream]\nclient_stall_sec = 0", "stream.client_stall_sec = 0: must be a number greater than 0"),
        ("[stream]\nmax_connections_per_ip = 100001", "stream.max_connections_per_ip = 100001: must be at most 100000"),
        ("[stream]\nh264_bitrate_kbps = 199", "stream.h264_bitrate_kbps = 199: must be between 200 and 20000"),
        ("[stream]\nh264_bitrate_kbps = 20001", "stream.h264_bitrate_kbps = 20001: must be between 200 and 20000"),
        ("[stream]\nh264_keyframe_sec = 0.0", "stream.h264_keyframe_sec = 0: must be between 0.1 and 60"),
        ("[stream]\nh264_keyframe_sec = nan", "stream.h264_keyframe_sec = NaN: must be between 0.1 and 60"),
        ("[stream]\nh264_keyframe_sec = 61.0", "stream.h264_keyframe_sec = 61: must be between 0.1 and 60"),
        ("[supervisor]\nshutdown_timeout_sec = 0", "supervisor.shutdown_timeout_sec = 0: must be a number"),
        (
            &format!("[supervisor]\ncontrol_socket = \"/tmp/{}.sock\"", "s".repeat(100)),
            "is 110 bytes long; a Unix socket path must be at most 107 bytes",
        ),
        ("[supervisor]\nrestart_backoff_initial_ms = 0", "supervisor.restart_backoff_initial_ms = 0: must be greater than 0"),
        (
            "[supervisor]\nrestart_backoff_initial_ms = 500\nrestart_backoff_max_ms = 100",
            "supervisor.restart_backoff_max_ms = 100: must be at least supervisor.restart_backoff_initial_ms",
        ),
        ("[supervisor]\nrestart_window_sec = 0", "supervisor.restart_window_sec = 0"),
        ("[watchdog]\nframe_timeout_sec = 0", "watchdog.frame_timeout_sec = 0"),
        ("[watchdog]\nheartbeat_timeout_sec = -1", "watchdog.heartbeat_timeout_sec = -1"),
    ] {
        let e = err(doc);
        assert!(e.contains(want), "{doc:?}: got {e:?}, want {want:?}");
    }
}

#[test]
fn http_hardening_keys_have_the_spec_defaults_and_parse() {
    let d = Config::default().stream;
    assert!(d.allowed_hosts.is_empty());
    assert_eq!(d.client_stall_sec, 10.0);
    assert_eq!(d.max_connections_per_ip, 0);
    let c = parse(
        "[stream]\nallowed_hosts = [\"billiards.lan\", \"Cam-1.local\"]\nclient_stall_sec = 3\nmax_connections_per_ip = 20\n",
    )
    .unwrap();
    assert_eq!(c.stream.allowed_hosts, ["billiards.lan", "Cam-1.local"]);
    assert_eq!(c.stream.client_stall_sec, 3.0);
    assert_eq!(c.stream.max_connections_per_ip, 20);
}

#[test]
fn ipv6_listen_is_accepted() {
    assert_eq!(
        parse("[stream]\nlisten = \"[::1]:9000\"")
            .unwrap()
            .stream
            .listen,
        "[::1]:9000"
    );
}

#[test]
fn host_names_with_a_port_are_accepted_for_listen() {
    for listen in ["localhost:8080", "billiards-nuc.local:80", "0.0.0.0:8080"] {
        let doc = format!("[stream]\nlisten = \"{listen}\"");
        assert_eq!(parse(&doc).unwrap().stream.listen, listen);
    }
}

#[test]
fn effective_config_round_trips_through_toml() {
    let mut c = Config::default();
    c.video.slots = 5;
    c.stream.auth_token = "secret".into();
    c.stream.allowed_hosts = vec!["billiards.lan".into()];
    c.stream.max_connections_per_ip = 8;
    c.video.source.kind = SourceKind::Camera;
    c.video.source.path = "/dev/video2".into();
    let text = c.to_toml();
    assert!(text.contains("[video.source]"), "{text}");
    assert!(text.contains("loop = true"), "{text}");
    assert_eq!(parse(&text).unwrap(), c);
}

#[test]
fn video_file_override_makes_a_looping_file_source() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.toml");
    std::fs::write(&path, "[video.source]\nkind = \"camera\"\nloop = false\n").unwrap();
    let loaded = load_from(ConfigOrigin::Flag(path.clone()), Some("/tmp/x.avi")).unwrap();
    assert_eq!(loaded.config.video.source.kind, SourceKind::File);
    assert_eq!(loaded.config.video.source.path, "/tmp/x.avi");
    assert!(loaded.config.video.source.looping);
    assert_eq!(loaded.origin.path(), Some(path.as_path()));
}

#[test]
fn missing_file_names_the_path() {
    let e = load_from(ConfigOrigin::Flag("/nonexistent/b.toml".into()), None)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("/nonexistent/b.toml: cannot read config file"),
        "{e}"
    );
}

#[test]
fn error_from_a_file_names_that_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("my.toml");
    std::fs::write(&path, "[video]\nslots = 0\n").unwrap();
    let e = load_from(ConfigOrigin::Env(path.clone()), None)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!("{}: video.slots = 0: must be at least 2", path.display())
    );
}

#[test]
fn defaults_origin_uses_defaults() {
    let loaded = load_from(ConfigOrigin::Defaults, None).unwrap();
    assert_eq!(loaded.config, Config::default());
    assert_eq!(loaded.origin.display(), "(built-in defaults)");
}

#[test]
fn derived_paths() {
    let mut c = Config::default();
    c.supervisor.control_socket = "/run/x.sock".into();
    assert_eq!(c.control_socket_path(), PathBuf::from("/run/x.sock"));
    c.video.fallback_dir = "/var/tmp/b".into();
    assert_eq!(c.shm_fallback_dir(), PathBuf::from("/var/tmp/b"));
    assert_eq!(
        c.worker_dir(Path::new("/opt/b/bin/sup")),
        PathBuf::from("/opt/b/bin")
    );
    c.supervisor.worker_dir = "/w".into();
    assert_eq!(
        c.worker_dir(Path::new("/opt/b/bin/sup")),
        PathBuf::from("/w")
    );
    assert!(Config::default()
        .control_socket_path()
        .ends_with("supervisor.sock"));
}

#[test]
fn camera_device_from_index_or_path() {
    let mut s = SourceConfig {
        device: 2,
        ..Default::default()
    };
    assert_eq!(s.camera_device(), "/dev/video2");
    s.path = "/dev/video9".into();
    assert_eq!(s.camera_device(), "/dev/video9");
}

#[test]
fn calibration_and_camera_defaults_are_the_spec_ones() {
    let c = parse("").unwrap();
    let cal = &c.video.calibration;
    assert_eq!(cal.file, "");
    assert!(!cal.enabled());
    assert_eq!(cal.model, LensModel::Pinhole);
    assert_eq!(cal.framing, Framing::Same);
    let cam = &c.video.camera;
    assert_eq!(cam.format, CameraFormat::Mjpg);
    assert_eq!(cam.buffers, 1);
    assert!(cam.auto_exposure);
    assert_eq!(cam.exposure, 0);
    assert!(cam.auto_white_balance);
    assert_eq!(cam.white_balance_k, 4600);
    assert_eq!(cam.gain, -1);
    assert_eq!(cam.focus, -1);
    assert!(c.video.source.distortion.is_empty());
}

#[test]
fn calibration_and_camera_keys_parse() {
    let c = parse(
        "[video.calibration]\nfile = \"/etc/billiards/cam.yaml\"\nmodel = \"fisheye\"\n\
         framing = \"valid\"\n[video.camera]\nformat = \"yuyv\"\nbuffers = 2\n\
         auto_exposure = false\nexposure = 150\nauto_white_balance = false\n\
         white_balance_k = 5000\ngain = 10\nfocus = 0\n",
    )
    .unwrap();
    assert_eq!(c.video.calibration.file, "/etc/billiards/cam.yaml");
    assert_eq!(c.video.calibration.model, LensModel::Fisheye);
    assert_eq!(c.video.calibration.framing, Framing::Valid);
    assert_eq!(c.video.camera.format, CameraFormat::Yuyv);
    assert_eq!(c.video.camera.buffers, 2);
    assert!(!c.video.camera.auto_exposure);
    assert_eq!(c.video.camera.exposure, 150);
    assert_eq!(c.video.camera.white_balance_k, 5000);
    assert_eq!((c.video.camera.gain, c.video.camera.focus), (10, 0));
}

#[test]
fn check_config_output_shows_calibration_and_camera_and_reparses() {
    let mut c = Config::default();
    c.video.calibration.file = "cam.yaml".into();
    c.video.calibration.framing = Framing::All;
    c.video.camera.format = CameraFormat::Any;
    let text = c.to_toml();
    assert!(text.contains("[video.calibration]"), "{text}");
    assert!(text.contains("framing = \"all\""), "{text}");
    assert!(text.contains("[video.camera]"), "{text}");
    assert!(text.contains("white_balance_k = 4600"), "{text}");
    assert_eq!(parse(&text).unwrap(), c);
}

#[test]
fn bad_calibration_and_camera_values_name_their_keys() {
    let e = err("[video.calibration]\nmodel = \"wide\"\n");
    assert!(e.contains("video.calibration.model"), "{e}");
    assert!(e.contains("pinhole") && e.contains("fisheye"), "{e}");
    let e = err("[video.calibration]\nframing = \"crop\"\n");
    assert!(e.contains("video.calibration.framing"), "{e}");
    let e = err("[video.camera]\nformat = \"h264\"\n");
    assert!(e.contains("video.camera.format"), "{e}");
    let e = err("[video.camera]\nzoom = 2\n");
    assert!(
        e.starts_with("billiards.toml: video.camera.zoom: unknown key"),
        "{e}"
    );
    let e = err(
        "[video.camera]\nbuffers = 0\nauto_exposure = false\nwhite_balance_k = 100\n\
         gain = -2\nfocus = -5\n",
    );
    assert!(
        e.contains("video.camera.buffers = 0: must be between 1 and 32"),
        "{e}"
    );
    assert!(
        e.contains("video.camera.exposure = 0: must be set (greater than 0) when video.camera.auto_exposure = false"),
        "{e}"
    );
    assert!(
        e.contains("video.camera.white_balance_k = 100: must be between 1000 and 15000"),
        "{e}"
    );
    assert!(e.contains("video.camera.gain = -2: must be -1"), "{e}");
    assert!(e.contains("video.camera.focus = -5: must be -1"), "{e}");
    assert_eq!(e.lines().count(), 5, "{e}");
    let e = err("[video.calibration]\nfile = \" cam.yaml\"\n");
    assert!(e.contains("video.calibration.file = \" cam.yaml\""), "{e}");
}

#[test]
fn synthetic_distortion_is_checked() {
    let c = parse("[video.source]\ndistortion = [-0.2, 0.05, 0.0, 0.0]\n").unwrap();
    assert_eq!(c.video.source.distortion, vec![-0.2, 0.05, 0.0, 0.0]);
    let e = err("[video.source]\ndistortion = [-0.2, 0.05]\n");
    assert!(
        e.contains("video.source.distortion = [-0.2, 0.05]: must hold 4 or 5 numbers"),
        "{e}"
    );
    let e = err(
        "[video.source]\nkind = \"file\"\npath = \"a.mp4\"\ndistortion = [0.1, 0.0, 0.0, 0.0]\n",
    );
    assert!(
        e.contains("applies only to video.source.kind = \"synthetic\""),
        "{e}"
    );
    let e = err("[video.source]\ndistortion = [100.0, 0.0, 0.0, 0.0]\n");
    assert!(e.contains("between -10 and 10"), "{e}");
}

#[test]
fn synthetic_camera_matrix_is_centred() {
    let k = SourceConfig::synthetic_camera_matrix(640, 360);
    assert_eq!(k, [640.0, 0.0, 319.5, 0.0, 640.0, 179.5, 0.0, 0.0, 1.0]);
}

#[test]
fn table_corners_are_optional_and_round_trip() {
    let c = parse("").unwrap();
    assert_eq!(c.vision.table_corners, None);
    assert!(!c.to_toml().contains("table_corners"));
    let c = parse("[vision]\ntable_corners = [[100, 80], [1180, 90.5], [1170, 640], [110, 630]]\n")
        .unwrap();
    let corners = c.vision.table_corners.clone().unwrap();
    assert_eq!(corners[1], [1180.0, 90.5]);
    let back = parse(&c.to_toml()).unwrap();
    assert_eq!(back, c);
}

#[test]
fn bad_table_corners_say_what_to_fix() {
    for (text, rule) in [
        (
            "[vision]\ntable_corners = [[0, 0], [10, 0], [10, 10]]",
            "must hold exactly 4 corners",
        ),
        (
            "[vision]\ntable_corners = [[100, 80], [1180, 90], [1170, 640], [110, 900]]",
            "lies outside the 1280x720 frame",
        ),
        (
            "[vision]\ntable_corners = [[100, 80], [110, 630], [1170, 640], [1180, 90]]",
            "clockwise",
        ),
        (
            "[vision]\ntable_corners = [[100, 80], [1170, 640], [1180, 90], [110, 630]]",
            "convex",
        ),
        (
            "[vision]\ntable_corners = [[100, 80], [110, 80], [110, 90], [100, 90]]",
            "less than 1% of the frame",
        ),
    ] {
        let e = err(text);
        assert!(e.contains("vision.table_corners"), "{text}: {e}");
        assert!(e.contains(rule), "{text}: {e}");
        assert!(e.contains("billiards.toml"), "{e}");
    }
    // A corner that is not a pair of numbers is a parse error naming the key.
    let e = err("[vision]\ntable_corners = [[1, 2, 3]]");
    assert!(e.contains("table_corners"), "{e}");
}
