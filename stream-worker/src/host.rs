//! The `Host` allow-list (SPEC "HTTP hardening"), the defence against DNS rebinding: a web
//! page the operator visits may rebind its own name to 127.0.0.1, and the browser would then
//! send that page's requests here with `Host: attacker.example`. Only IP literals,
//! `localhost`, the host of `stream.listen` and the names in `stream.allowed_hosts` are
//! answered; any other host gets 403.

use std::net::{IpAddr, Ipv6Addr};

use hyper::header::HOST;
use hyper::Request;

/// Which hosts requests may name.
#[derive(Debug, Clone)]
pub struct HostPolicy {
    /// Allowed names, lowercase, without a trailing dot.
    names: Vec<String>,
}

impl HostPolicy {
    /// The policy for `stream.listen` = `listen` and `stream.allowed_hosts` = `allowed`.
    pub fn new(listen: &str, allowed: &[String]) -> HostPolicy {
        let mut names = vec!["localhost".to_string()];
        // `HOST:PORT`; an IP listen address is covered by the IP-literal rule already.
        if let Some((host, _port)) = listen.rsplit_once(':') {
            let host = normalize(host);
            if host.parse::<IpAddr>().is_err() {
                names.push(host);
            }
        }
        names.extend(allowed.iter().map(|h| normalize(h)));
        names.retain(|n| !n.is_empty());
        names.sort();
        names.dedup();
        HostPolicy { names }
    }

    /// Whether the authority `value` (`host`, `host:port`, `[v6]:port`) may be served.
    pub fn allows(&self, value: &str) -> bool {
        let Some(host) = split_host(value) else {
            return false;
        };
        if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            return v6.parse::<Ipv6Addr>().is_ok();
        }
        if host.parse::<IpAddr>().is_ok() {
            return true;
        }
        let name = normalize(host);
        !name.is_empty() && self.names.contains(&name)
    }

    /// Checks every host a request names: its `Host` header (exactly one, or none for an
    /// HTTP/1.0 client, which no browser is) and an absolute-form target's authority.
    /// The error says what was refused and how to allow it.
    pub fn check<B>(&self, req: &Request<B>) -> Result<(), String> {
        let mut hosts = req.headers().get_all(HOST).iter();
        let header = hosts.next();
        if hosts.next().is_some() {
            return Err("more than one Host header".into());
        }
        if let Some(value) = header {
            let Ok(value) = value.to_str() else {
                return Err("the Host header is not ASCII".into());
            };
            if !self.allows(value) {
                return Err(refused(value));
            }
        }
        if let Some(authority) = req.uri().authority() {
            if !self.allows(authority.as_str()) {
                return Err(refused(authority.as_str()));
            }
        }
        Ok(())
    }
}

fn refused(host: &str) -> String {
    format!(
        "host {host:?} is not allowed: use an IP address or localhost, or add the name to stream.allowed_hosts"
    )
}

/// The host part of an authority, brackets kept for IPv6; `None` if the port or the shape is
/// malformed.
fn split_host(value: &str) -> Option<&str> {
    let value = value.trim();
    let (host, port) = if value.starts_with('[') {
        let end = value.find(']')?;
        let (host, rest) = value.split_at(end + 1);
        (
            host,
            rest.strip_prefix(':').or(rest.is_empty().then_some(""))?,
        )
    } else if value.parse::<Ipv6Addr>().is_ok() {
        // Bare IPv6 is not valid in Host, but it names no DNS name either.
        (value, "")
    } else {
        match value.split_once(':') {
            Some((host, port)) => (host, port),
            None => (value, ""),
        }
    };
    let port_ok = port.is_empty() || (port.len() <= 5 && port.parse::<u16>().is_ok());
    (port_ok && !host.is_empty() && port.bytes().all(|b| b.is_ascii_digit())).then_some(host)
}

/// Lowercase, without the trailing dot of a fully qualified name (`Localhost.` = `localhost`).
fn normalize(name: &str) -> String {
    name.trim()
        .trim_end_matches('.')
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> HostPolicy {
        HostPolicy::new("billiards-nuc.local:8080", &["Cam.LAN".to_string()])
    }

    #[test]
    fn ip_literals_localhost_listen_host_and_allowed_names_pass() {
        let p = policy();
        for host in [
            "127.0.0.1",
            "127.0.0.1:8080",
            "192.168.1.20:80",
            "[::1]",
            "[::1]:8080",
            "[fe80::1]:8080",
            "::1",
            "localhost",
            "LOCALHOST:8080",
            "localhost.",
            "billiards-nuc.local:8080",
            "billiards-nuc.local",
            "cam.lan",
            "CAM.LAN.:9000",
            "localhost:",
        ] {
            assert!(p.allows(host), "{host:?} must be allowed");
        }
    }

    #[test]
    fn other_names_and_malformed_hosts_are_refused() {
        let p = policy();
        for host in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "cam.lan.evil.example",
            "",
            ":8080",
            "[::1",
            "[::1]x",
            "[evil.example]:80",
            "[not-an-ip]",
            "localhost:99999",
            "localhost:80:80",
            "localhost:+80",
            "user@localhost",
            "0x7f.1",
        ] {
            assert!(!p.allows(host), "{host:?} must be refused");
        }
    }

    #[test]
    fn an_ip_listen_address_adds_no_name() {
        let p = HostPolicy::new("127.0.0.1:8080", &[]);
        assert_eq!(p.names, ["localhost"]);
        let p = HostPolicy::new("[::1]:8080", &[]);
        assert!(p.allows("[::1]:8080"));
        assert!(!p.allows("evil.example"));
    }

    #[test]
    fn requests_are_checked_by_header_and_absolute_target() {
        let p = policy();
        let req = |uri: &str, hosts: &[&str]| {
            let mut b = Request::builder().uri(uri);
            for h in hosts {
                b = b.header(HOST, *h);
            }
            b.body(()).unwrap()
        };
        assert!(p.check(&req("/", &["127.0.0.1:8080"])).is_ok());
        assert!(p.check(&req("/", &[])).is_ok(), "HTTP/1.0 without Host");
        let e = p.check(&req("/", &["evil.example"])).unwrap_err();
        assert!(
            e.contains("\"evil.example\"") && e.contains("stream.allowed_hosts"),
            "{e}"
        );
        assert!(p.check(&req("/", &["localhost", "evil.example"])).is_err());
        assert!(p
            .check(&req("http://evil.example/snapshot.jpg", &["localhost"]))
            .is_err());
        assert!(p
            .check(&req("http://localhost:8080/snapshot.jpg", &["localhost"]))
            .is_ok());
    }
}
