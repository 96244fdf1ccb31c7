//! Process tests of the SPEC's "HTTP hardening": the `Host` allow-list, the deadlines that keep
//! trickling, idle and non-reading connections from holding the server's slots, and the
//! per-address connection cap. The real server binary, real loopback sockets.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

use common::*;

/// The head-deadline test hook, shortened so the tests need not wait 10 s.
const HEAD_HOOK: &str = "BILLIARDS_STREAM_TEST_HEAD_TIMEOUT_MS";

#[test]
fn hosts_outside_the_allow_list_get_403() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::new(dir.path());
    setup.allowed_hosts = vec!["billiards.lan".into()];
    setup.auth_token = "s3cret".into();
    let seg = setup.frame_segment();
    let _feed = seg.feed(30);
    let server = Server::start(&setup, dir.path());
    server.wait_health(200);
    let a = server.addr;
    let port = a.port();
    let auth = [("Authorization", "Bearer s3cret")];

    for host in [
        format!("127.0.0.1:{port}"),
        "127.0.0.1".to_string(),
        format!("[::1]:{port}"),
        format!("[::ffff:127.0.0.1]:{port}"),
        format!("10.1.2.3:{port}"),
        format!("localhost:{port}"),
        "LocalHost".to_string(),
        format!("billiards.lan:{port}"),
        "Billiards.LAN.".to_string(),
    ] {
        let r = request_to_host(a, "GET", "/api/stream", &host, &auth);
        assert_eq!(r.status, 200, "Host: {host}: {}", r.text());
    }

    for host in [
        "evil.example".to_string(),
        format!("evil.example:{port}"),
        format!("billiards.lan.evil.example:{port}"),
        format!("localhost.evil.example:{port}"),
        format!("127.0.0.1.nip.io:{port}"),
        format!("[evil.example]:{port}"),
    ] {
        for path in ["/snapshot.jpg", "/api/status", "/healthz", "/"] {
            // With the token too: a rebound page might have it in the URL it was given.
            let r = request_to_host(a, "GET", path, &host, &auth);
            assert_eq!(r.status, 403, "Host: {host} {path}: {}", r.text());
            let e = r.json()["error"].as_str().unwrap().to_string();
            assert!(e.contains("stream.allowed_hosts"), "{e}");
        }
        // Before anything else: no 401 or 405 that would tell a rebound page what exists.
        let r = request_to_host(a, "POST", "/api/status", &host, &[]);
        assert_eq!(r.status, 403, "Host: {host} POST: {}", r.text());
    }

    // An absolute-form target names the host too.
    let mut s = TcpStream::connect(a).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET http://evil.example/api/stream HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer s3cret\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    assert!(text.starts_with("HTTP/1.1 403 "), "{text}");

    let m = get(a, "/healthz");
    assert_eq!(m.status, 200);
    let metrics = request(a, "GET", "/metrics", &auth).text();
    assert!(
        metric(
            &metrics,
            "billiards_stream_http_responses_total{code=\"403\"}"
        )
        .is_some_and(|n| n >= 31.0),
        "403s are counted"
    );
}

/// A loopback connection whose receive buffer is small, so the server's writes block after a
/// few kilobytes instead of several megabytes (the kernel's autotuned default).
fn small_buffer_connect(addr: SocketAddr) -> TcpStream {
    let SocketAddr::V4(v4) = addr else {
        panic!("tests listen on IPv4 loopback");
    };
    // SAFETY: plain socket calls on a descriptor this function owns; it is handed to
    // TcpStream (which closes it) right after connect, or closed on failure.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let size: libc::c_int = 4096;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let rc = libc::connect(
            fd,
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            libc::close(fd);
            panic!("connect {addr}: {e}");
        }
        TcpStream::from_raw_fd(fd)
    }
}

/// Whether the server has closed `s`: end of stream or a reset, after draining what it sent.
fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
}

#[test]
fn trickling_idle_and_non_reading_connections_are_closed_and_free_the_server() {
    // The pipeliners alone outnumber the 4 + 256 slots, so without a write-progress deadline
    // no normal client would ever get in; the others would only delay it by the head deadline.
    const TRICKLERS: usize = 100;
    const PIPELINERS: usize = 270;
    const IDLE: usize = 30;
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::new(dir.path());
    setup.max_clients = 4; // 4 + 256 connection slots: the bad connections take them all
                           // 3 s deadlines: long enough that the 400 bad connections are all open and holding
                           // their slots before the first ones time out, even on a loaded machine.
    setup.client_stall_sec = 3.0;
    setup.env = vec![(HEAD_HOOK.into(), "3000".into())];
    let seg = setup.frame_segment();
    let _feed = seg.feed(30);
    let server = Server::start(&setup, dir.path());
    server.wait_health(200);
    let a = server.addr;

    // Idle keep-alive: one answered request, then silence.
    let mut idle = Vec::new();
    for _ in 0..IDLE {
        let mut s = TcpStream::connect(a).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(s, "GET /healthz HTTP/1.1\r\nHost: {a}\r\n\r\n").unwrap();
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200 "));
        s.set_nonblocking(true).unwrap();
        idle.push(s);
    }
    // Pipelining clients that never read: the dashboard page (12 KB) over and over.
    let mut pipeliners = Vec::new();
    let pipelined = format!("GET / HTTP/1.1\r\nHost: {a}\r\n\r\n").repeat(64);
    for _ in 0..PIPELINERS {
        let s = small_buffer_connect(a);
        s.set_nonblocking(true).unwrap();
        pipeliners.push(s);
    }
    // Tricklers: a head that grows by one byte every 100 ms and never ends.
    let mut tricklers = Vec::new();
    for _ in 0..TRICKLERS {
        let mut s = TcpStream::connect(a).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nX-Slow: ").unwrap();
        s.set_nonblocking(true).unwrap();
        tricklers.push(s);
    }

    // The bad clients keep going until the server drops them (or the test's own limit).
    let started = Instant::now();
    let stop_at = started + Duration::from_secs(120);
    let mut open_pipeliners = vec![true; PIPELINERS];
    let mut open_tricklers = vec![true; TRICKLERS];
    let mut refused_meanwhile = false;
    let mut answered_after = None;
    while Instant::now() < stop_at {
        for (s, open) in pipeliners.iter_mut().zip(&mut open_pipeliners) {
            if *open {
                match s.write(pipelined.as_bytes()) {
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => *open = false,
                }
            }
        }
        for (s, open) in tricklers.iter_mut().zip(&mut open_tricklers) {
            if *open && s.write(b"a").is_err() {
                *open = false;
            }
        }
        if !refused_meanwhile && started.elapsed() < Duration::from_millis(2000) {
            // While the bad connections are fresh, every slot is taken.
            let r = get(a, "/api/stream");
            refused_meanwhile = r.status == 503;
        }
        // Past both deadlines (3 s each) plus slack for a loaded machine, a normal client
        // must get its answer.
        if answered_after.is_none() && started.elapsed() > Duration::from_secs(7) {
            let t = Instant::now();
            let r = get(a, "/api/stream");
            if r.status == 200 {
                answered_after = Some((started.elapsed(), t.elapsed()));
            }
        }
        if answered_after.is_some()
            && !open_tricklers.contains(&true)
            && !open_pipeliners.contains(&true)
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        refused_meanwhile,
        "the bad connections never filled the server's slots; the test proves nothing"
    );
    let (at, took) = answered_after.unwrap_or_else(|| {
        panic!(
            "a normal client was never answered within 120 s; connections: {:?}",
            open_pipeliners.iter().filter(|o| **o).count()
        )
    });
    eprintln!(
        "normal client answered {:.2} s after the attack started, in {:.3} s",
        at.as_secs_f64(),
        took.as_secs_f64()
    );

    // Every bad connection was closed by the server, not by the test.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut still_open;
    loop {
        still_open = 0;
        for s in pipeliners
            .iter_mut()
            .chain(tricklers.iter_mut())
            .chain(idle.iter_mut())
        {
            if !closed_by_server(s) {
                still_open += 1;
            }
        }
        if still_open == 0 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        still_open,
        0,
        "connections the server left open; log:\n{}",
        server.log_text()
    );
    // The server's own count agrees: only the scrape itself is open.
    server.wait_metric("billiards_stream_connections", 1.0);
}

#[test]
fn a_stream_client_that_stops_reading_is_closed_after_client_stall_sec() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::new(dir.path());
    setup.client_stall_sec = 1.0;
    let seg = setup.frame_segment();
    let _feed = seg.feed(30);
    let server = Server::start(&setup, dir.path());
    server.wait_health(200);
    let mut s = small_buffer_connect(server.addr);
    write!(s, "GET /stream/video HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    server.wait_metric("billiards_stream_clients", 1.0);
    // It reads nothing: within the buffers' fill time plus 1 s, the server lets it go (the
    // former rule waited 60 s, beyond this wait).
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let m = get(server.addr, "/metrics").text();
        if metric(&m, "billiards_stream_clients") == Some(0.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stalled stream client is still connected"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    s.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !closed_by_server(&mut s) {
        assert!(Instant::now() < deadline, "the socket was not closed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn connections_per_address_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::new(dir.path());
    setup.max_connections_per_ip = 3;
    let seg = setup.frame_segment();
    let _feed = seg.feed(30);
    let server = Server::start(&setup, dir.path());
    server.wait_health(200);
    let a = server.addr;
    // Three connections that have not sent anything yet hold this address's places.
    let mut held: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(a).unwrap()).collect();
    let mut s = TcpStream::connect(a).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    assert!(text.starts_with("HTTP/1.1 503 "), "{text}");
    assert!(text.contains("stream.max_connections_per_ip"), "{text}");
    // A place freed is a place for the next connection.
    held.pop();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut s = TcpStream::connect(a).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(
            s,
            "GET /healthz HTTP/1.1\r\nHost: {a}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        if text.starts_with("HTTP/1.1 200 ") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the freed place was not reused: {text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(held);
}
