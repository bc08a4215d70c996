//! The webhook's bearer token: where a request presents it (`Authorization: Bearer`,
//! else the `token` query parameter, since an SMN subscription cannot set headers)
//! and a comparison that takes the same time whatever the guess. Only a digest of
//! the token is kept; it is never printed.

use std::fmt;

use axum::http::{header, HeaderMap};
use sha2::{Digest, Sha256};

/// The configured token, as a SHA-256 digest: comparing digests hides the token's
/// length too.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Token {
    digest: [u8; 32],
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    pub(crate) fn new(token: &str) -> Token {
        Token {
            digest: Sha256::digest(token.as_bytes()).into(),
        }
    }

    /// Whether `presented` is the token, in time independent of where they differ.
    pub(crate) fn matches(&self, presented: &[u8]) -> bool {
        let other: [u8; 32] = Sha256::digest(presented).into();
        let diff = self
            .digest
            .iter()
            .zip(other.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        // Keeps the compiler from turning the fold into an early exit.
        std::hint::black_box(diff) == 0
    }

    /// Whether the request presents the token (header first, then query).
    pub(crate) fn admits(&self, headers: &HeaderMap, query: Option<&str>) -> bool {
        match presented(headers, query) {
            Some(p) => self.matches(p.as_bytes()),
            None => false,
        }
    }
}

/// The token a request presents: `Authorization: Bearer <token>`, else `?token=`.
fn presented(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_string())
        });
    bearer.or_else(|| {
        form_urlencoded::parse(query?.as_bytes())
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_token_comes_as_a_bearer_header_or_a_query_parameter() {
        let token = Token::new("s3cret-token-0123456789");
        let mut headers = HeaderMap::new();
        assert!(!token.admits(&headers, None));
        assert!(token.admits(&headers, Some("a=1&token=s3cret-token-0123456789")));
        assert!(!token.admits(&headers, Some("token=s3cret-token-012345678")));
        assert!(!token.admits(&headers, Some("tok=s3cret-token-0123456789")));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret-token-0123456789"),
        );
        assert!(token.admits(&headers, None));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer wrong"),
        );
        // A wrong header is not rescued by the query.
        assert!(!token.admits(&headers, Some("token=s3cret-token-0123456789")));
        // A Basic header is not the token: the query decides.
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic eDp5"),
        );
        assert!(token.admits(&headers, Some("token=s3cret-token-0123456789")));
    }

    #[test]
    fn debug_hides_the_token() {
        assert_eq!(format!("{:?}", Token::new("abc")), "Token(<redacted>)");
    }
}
