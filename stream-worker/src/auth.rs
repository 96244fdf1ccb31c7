//! The `stream.auth_token` rule: every endpoint but `/healthz` needs the token, given either as
//! `Authorization: Bearer TOKEN` or as `?token=TOKEN` (for `<img>` tags, which cannot set headers).

use hyper::header::AUTHORIZATION;
use hyper::HeaderMap;

use crate::query::Query;

/// Whether a request carries `token`. An empty `token` means auth is off.
pub fn authorized(token: &str, headers: &HeaderMap, query: &Query) -> bool {
    if token.is_empty() {
        return true;
    }
    let mut ok = false;
    // Every presented credential is compared, so timing does not reveal which one matched.
    for value in headers.get_all(AUTHORIZATION) {
        if let Some(given) = value.to_str().ok().and_then(bearer) {
            ok |= constant_time_eq(given.as_bytes(), token.as_bytes());
        }
    }
    if let Some(given) = query.get("token") {
        ok |= constant_time_eq(given.as_bytes(), token.as_bytes());
    }
    ok
}

/// The credentials of `Bearer <token>` (scheme case-insensitive, as RFC 7235 says).
fn bearer(header: &str) -> Option<&str> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|t| !t.is_empty())
}

/// Compares two byte strings in time that depends only on their lengths, not on where they
/// first differ, so the token cannot be guessed byte by byte from response times.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().max(b.len());
    let mut diff = (a.len() ^ b.len()) as u64;
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= u64::from(x ^ y);
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(auth: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for a in auth {
            h.append(AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        h
    }

    #[test]
    fn empty_token_disables_auth() {
        assert!(authorized("", &HeaderMap::new(), &Query::default()));
    }

    #[test]
    fn bearer_header_or_query_token_is_accepted() {
        let none = Query::default();
        assert!(authorized("s3cret", &headers(&["Bearer s3cret"]), &none));
        assert!(authorized("s3cret", &headers(&["bearer  s3cret "]), &none));
        assert!(authorized(
            "s3cret",
            &HeaderMap::new(),
            &Query::parse(Some("token=s3cret"))
        ));
        assert!(authorized(
            "a+b",
            &HeaderMap::new(),
            &Query::parse(Some("token=a%2Bb"))
        ));
    }

    #[test]
    fn missing_or_wrong_credentials_are_refused() {
        let none = Query::default();
        assert!(!authorized("s3cret", &HeaderMap::new(), &none));
        assert!(!authorized("s3cret", &headers(&["Bearer wrong"]), &none));
        assert!(!authorized("s3cret", &headers(&["Bearer s3cre"]), &none));
        assert!(!authorized("s3cret", &headers(&["Bearer s3cret2"]), &none));
        assert!(!authorized("s3cret", &headers(&["Basic s3cret"]), &none));
        assert!(!authorized("s3cret", &headers(&["Bearer"]), &none));
        assert!(!authorized("s3cret", &headers(&["s3cret"]), &none));
        assert!(!authorized(
            "s3cret",
            &HeaderMap::new(),
            &Query::parse(Some("token="))
        ));
        assert!(!authorized(
            "s3cret",
            &HeaderMap::new(),
            &Query::parse(Some("tok=s3cret"))
        ));
    }

    #[test]
    fn constant_time_eq_compares_exactly() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"ab\0", b"ab"));
    }
}
