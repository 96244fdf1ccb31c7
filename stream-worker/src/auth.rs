//! The `stream.auth_token` rule: every endpoint but `/healthz` needs the token, given either as
//! `Authorization: Bearer TOKEN` or as `?token=TOKEN` (for `<img>` tags, which cannot set headers).

use hyper::header::AUTHORIZATION;
use hyper::HeaderMap;
use sha2::{Digest, Sha256};

use crate::query::Query;

/// The configured token, kept only as its SHA-256 digest, so checking a request costs the
/// same whatever the token's length.
#[derive(Clone)]
pub struct Token(Option<[u8; 32]>);

impl Token {
    /// The token `stream.auth_token`; empty means auth is off.
    pub fn new(token: &str) -> Token {
        Token((!token.is_empty()).then(|| Sha256::digest(token.as_bytes()).into()))
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the digest: it would let a log reader test guesses offline.
        f.write_str(if self.0.is_some() {
            "Token(set)"
        } else {
            "Token(off)"
        })
    }
}

/// Whether a request carries `token` (always, when auth is off).
pub fn authorized(token: &Token, headers: &HeaderMap, query: &Query) -> bool {
    let Some(want) = &token.0 else {
        return true;
    };
    let mut ok = false;
    // Every presented credential is compared, so timing does not reveal which one matched.
    for value in headers.get_all(AUTHORIZATION) {
        if let Some(given) = value.to_str().ok().and_then(bearer) {
            ok |= digest_eq(&Sha256::digest(given.as_bytes()).into(), want);
        }
    }
    if let Some(given) = query.get("token") {
        ok |= digest_eq(&Sha256::digest(given.as_bytes()).into(), want);
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

/// Compares two digests in full, in time independent of where they differ: the token cannot
/// be guessed byte by byte from response times. Comparing fixed-size digests instead of the
/// raw strings also hides the token's length, which a byte-wise loop would reveal.
fn digest_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    // Keeps the compiler from turning the fold into an early-exit comparison.
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
        assert!(authorized(
            &Token::new(""),
            &HeaderMap::new(),
            &Query::default()
        ));
    }

    #[test]
    fn bearer_header_or_query_token_is_accepted() {
        let none = Query::default();
        assert!(authorized(
            &Token::new("s3cret"),
            &headers(&["Bearer s3cret"]),
            &none
        ));
        assert!(authorized(
            &Token::new("s3cret"),
            &headers(&["bearer  s3cret "]),
            &none
        ));
        assert!(authorized(
            &Token::new("s3cret"),
            &HeaderMap::new(),
            &Query::parse(Some("token=s3cret"))
        ));
        assert!(authorized(
            &Token::new("a+b"),
            &HeaderMap::new(),
            &Query::parse(Some("token=a%2Bb"))
        ));
    }

    #[test]
    fn missing_or_wrong_credentials_are_refused() {
        let none = Query::default();
        assert!(!authorized(&Token::new("s3cret"), &HeaderMap::new(), &none));
        assert!(!authorized(
            &Token::new("s3cret"),
            &headers(&["Bearer wrong"]),
            &none
        ));
        assert!(!authorized(
            &Token::new("s3cret"),
            &headers(&["Bearer s3cre"]),
            &none
        ));
        assert!(!authorized(
            &Token::new("s3cret"),
            &headers(&["Bearer s3cret2"]),
            &none
        ));
        assert!(!authorized(
            &Token::new("s3cret"),
            &headers(&["Basic s3cret"]),
            &none
        ));
        assert!(!authorized(
            &Token::new("s3cret"),
            &headers(&["Bearer"]),
            &none
        ));
        assert!(!authorized(
            &Token::new("s3cret"),
            &headers(&["s3cret"]),
            &none
        ));
        assert!(!authorized(
            &Token::new("s3cret"),
            &HeaderMap::new(),
            &Query::parse(Some("token="))
        ));
        assert!(!authorized(
            &Token::new("s3cret"),
            &HeaderMap::new(),
            &Query::parse(Some("tok=s3cret"))
        ));
    }

    #[test]
    fn digests_are_compared_exactly_and_the_token_is_never_printed() {
        let d = |s: &str| -> [u8; 32] { Sha256::digest(s.as_bytes()).into() };
        assert!(digest_eq(&d(""), &d("")));
        assert!(digest_eq(&d("abc"), &d("abc")));
        assert!(!digest_eq(&d("abc"), &d("abd")));
        assert!(!digest_eq(&d("abc"), &d("ab")));
        assert!(!digest_eq(&d("ab\0"), &d("ab")));
        let shown = format!("{:?}", Token::new("s3cret"));
        assert_eq!(shown, "Token(set)");
        assert_eq!(format!("{:?}", Token::new("")), "Token(off)");
    }
}
