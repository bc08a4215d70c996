//! SDK-HMAC-SHA256 request signing, exactly as the official Huawei Cloud SDKs do it.
//!
//! Pure functions only: no clock, no network. The client supplies the `X-Sdk-Date`
//! header; the fake IMS uses [`verify`] with the same canonicalisation, and the
//! official test vectors in the unit tests pin it to the real SDK's output.

use std::borrow::Cow;

use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};

use crate::auth::credentials::Secret;

pub const ALGORITHM: &str = "SDK-HMAC-SHA256";
pub const DATE_HEADER: &str = "x-sdk-date";

/// The SDKs leave `A-Za-z0-9-_.~` alone and encode everything else (space as `%20`).
pub const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `X-Sdk-Date` format: `20261122T120000Z`.
pub const DATE_FORMAT: &[time::format_description::FormatItem<'static>] =
    time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");

/// What a signature covers. `headers` must already hold `host` and `x-sdk-date`
/// (and `x-security-token` for temporary credentials).
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    pub method: &'a str,
    /// The path as sent on the wire (percent-encoded segments allowed).
    pub path: &'a str,
    /// Decoded query pairs.
    pub query: &'a [(String, String)],
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignError {
    #[error("request has no X-Sdk-Date header to sign")]
    MissingDate,
    #[error("request has no Host header to sign")]
    MissingHost,
}

pub fn encode(s: &str) -> String {
    encoded(s).into_owned()
}

/// [`encode`], borrowing `s` when nothing in it needs an escape (every request is
/// signed, and most of what it signs needs none).
fn encoded(s: &str) -> Cow<'_, str> {
    utf8_percent_encode(s, UNRESERVED).into()
}

/// `X-Sdk-Date` for `t`: `20261122T120000Z`.
pub fn sdk_date(t: std::time::SystemTime) -> String {
    let rfc3339 = humantime::format_rfc3339_seconds(t).to_string();
    rfc3339.chars().filter(|c| *c != '-' && *c != ':').collect()
}

/// Canonical URI: each `/`-segment of the decoded path re-encoded, always ending in `/`.
pub fn canonical_uri(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 1);
    push_canonical_uri(&mut out, path);
    out
}

fn push_canonical_uri(out: &mut String, path: &str) {
    let decoded = percent_decode_str(path).decode_utf8_lossy();
    for (i, segment) in decoded.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(&encoded(segment));
    }
    if !out.ends_with('/') {
        out.push('/');
    }
}

pub fn canonical_query(query: &[(String, String)]) -> String {
    let mut out = String::new();
    push_canonical_query(&mut out, query);
    out
}

fn push_canonical_query(out: &mut String, query: &[(String, String)]) {
    let mut pairs: Vec<(Cow<'_, str>, Cow<'_, str>)> = query
        .iter()
        .map(|(k, v)| (encoded(k), encoded(v)))
        .collect();
    pairs.sort();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
}

/// Headers to sign: every header except names containing `_`, lowercased, sorted.
fn signed_headers(headers: &[(String, String)]) -> Vec<(String, &str)> {
    let mut out: Vec<(String, &str)> = headers
        .iter()
        .filter(|(k, _)| !k.contains('_'))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim()))
        .collect();
    out.sort();
    out
}

fn push_header_names<K: AsRef<str>, V>(out: &mut String, headers: &[(K, V)]) {
    for (i, (k, _)) in headers.iter().enumerate() {
        if i > 0 {
            out.push(';');
        }
        out.push_str(k.as_ref());
    }
}

pub fn canonical_request(parts: &RequestParts<'_>) -> String {
    let headers = signed_headers(parts.headers);
    canonical_request_with(parts, &headers)
}

fn canonical_request_with<K: AsRef<str>, V: AsRef<str>>(
    parts: &RequestParts<'_>,
    headers: &[(K, V)],
) -> String {
    let mut out = String::with_capacity(512);
    out.push_str(&parts.method.to_ascii_uppercase());
    out.push('\n');
    push_canonical_uri(&mut out, parts.path);
    out.push('\n');
    push_canonical_query(&mut out, parts.query);
    out.push('\n');
    for (k, v) in headers {
        out.push_str(k.as_ref());
        out.push(':');
        out.push_str(v.as_ref());
        out.push('\n');
    }
    out.push('\n');
    push_header_names(&mut out, headers);
    out.push('\n');
    push_hex(&mut out, &Sha256::digest(parts.body));
    out
}

/// Lowercase hex of `bytes` onto `out`, without an intermediate string.
fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
}

pub fn string_to_sign(date: &str, canonical_request: &str) -> String {
    let mut out = String::with_capacity(ALGORITHM.len() + date.len() + 66);
    out.push_str(ALGORITHM);
    out.push('\n');
    out.push_str(date);
    out.push('\n');
    push_hex(&mut out, &Sha256::digest(canonical_request.as_bytes()));
    out
}

fn hmac_hex(secret: &Secret, data: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.expose().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(data.as_bytes());
    let mut out = String::with_capacity(64);
    push_hex(&mut out, &mac.finalize().into_bytes());
    out
}

fn find_header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

/// The `Authorization` header value for a request.
pub fn authorization(
    access_key: &str,
    secret_key: &Secret,
    parts: &RequestParts<'_>,
) -> Result<String, SignError> {
    let date = find_header(parts.headers, DATE_HEADER).ok_or(SignError::MissingDate)?;
    find_header(parts.headers, "host").ok_or(SignError::MissingHost)?;
    let headers = signed_headers(parts.headers);
    let canonical = canonical_request_with(parts, &headers);
    let signature = hmac_hex(secret_key, &string_to_sign(date, &canonical));
    let mut out = String::with_capacity(160 + access_key.len());
    out.push_str(ALGORITHM);
    out.push_str(" Access=");
    out.push_str(access_key);
    out.push_str(", SignedHeaders=");
    push_header_names(&mut out, &headers);
    out.push_str(", Signature=");
    out.push_str(&signature);
    Ok(out)
}

/// A parsed `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedAuthorization {
    pub access_key: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

pub fn parse_authorization(value: &str) -> Option<ParsedAuthorization> {
    let rest = value.strip_prefix(ALGORITHM)?.trim_start();
    let (mut access, mut names, mut sig) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k {
            "Access" => access = Some(v.to_string()),
            "SignedHeaders" => names = Some(v.split(';').map(str::to_string).collect()),
            "Signature" => sig = Some(v.to_string()),
            _ => return None,
        }
    }
    Some(ParsedAuthorization {
        access_key: access?,
        signed_headers: names?,
        signature: sig?,
    })
}

/// Recomputes the signature over the headers the client said it signed and compares
/// in constant time. `headers` are all headers the server received.
pub fn verify(auth: &ParsedAuthorization, secret_key: &Secret, parts: &RequestParts<'_>) -> bool {
    let Some(date) = find_header(parts.headers, DATE_HEADER) else {
        return false;
    };
    let mut headers = Vec::with_capacity(auth.signed_headers.len());
    for name in &auth.signed_headers {
        match find_header(parts.headers, name) {
            Some(v) => headers.push((name.to_ascii_lowercase(), v.to_string())),
            None => return false,
        }
    }
    headers.sort();
    if !headers.iter().any(|(k, _)| k == "host") || !headers.iter().any(|(k, _)| k == DATE_HEADER) {
        return false;
    }
    let canonical = canonical_request_with(parts, &headers);
    let expected = hmac_hex(secret_key, &string_to_sign(date, &canonical));
    constant_time_eq(expected.as_bytes(), auth.signature.as_bytes())
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str =
        "/v1/1bed856811654c1cb661a6ca845ebc77/cloudimages/d164b5df-1bc3-4c3f-893e-3e471fd16e64/members";
    const HOST: &str = "ims.cn-north-4.myhuaweicloud.com";
    const AK: &str = "AKTESTEXAMPLE000";
    const DATE: &str = "20261122T120000Z";

    fn sk() -> Secret {
        Secret::new("SKTESTEXAMPLE0000000000000000000000000000")
    }

    fn q(marker: &str) -> Vec<(String, String)> {
        vec![
            ("limit".into(), "2".into()),
            ("marker".into(), marker.into()),
        ]
    }

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn check(
        headers: &[(String, String)],
        query: &[(String, String)],
        creq_hash: Option<&str>,
        expected: &str,
    ) {
        let parts = RequestParts {
            method: "GET",
            path: PATH,
            query,
            headers,
            body: b"",
        };
        if let Some(hash) = creq_hash {
            let creq = canonical_request(&parts);
            assert_eq!(
                hex::encode(Sha256::digest(creq.as_bytes())),
                hash,
                "canonical request:\n{creq}"
            );
        }
        let auth = authorization(AK, &sk(), &parts).unwrap();
        assert_eq!(auth, expected);
        let parsed = parse_authorization(&auth).unwrap();
        assert!(verify(&parsed, &sk(), &parts));
        assert!(!verify(&parsed, &Secret::new("wrong"), &parts));
    }

    #[test]
    fn sdk_date_is_the_compact_utc_form() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_795_262_405_900);
        assert_eq!(sdk_date(t), "20261121T120005Z");
        let parsed = time::PrimitiveDateTime::parse(&sdk_date(t), DATE_FORMAT).unwrap();
        assert_eq!(parsed.assume_utc().unix_timestamp(), 1_795_262_405);
    }

    #[test]
    fn vector_a_host_and_date() {
        check(
            &h(&[("Host", HOST), ("X-Sdk-Date", DATE)]),
            &q("YWJj"),
            Some("f3caaf051d85d9efda784948abcda3582f657005ec6db10184476f39f46ba818"),
            "SDK-HMAC-SHA256 Access=AKTESTEXAMPLE000, SignedHeaders=host;x-sdk-date, Signature=3e31b8a0f0569ce873918d11381d17ff8b99afd968ade81dbde70b15e20660f4",
        );
    }

    #[test]
    fn vector_b_official_client_headers() {
        check(
            &h(&[
                ("Content-Type", "application/json"),
                ("User-Agent", "huaweicloud-usdk-python/3.0; test"),
                ("X-Project-Id", "1bed856811654c1cb661a6ca845ebc77"),
                ("X-Sdk-Date", DATE),
                ("Host", HOST),
            ]),
            &q("YWJj"),
            Some("7eec7fe5dabc09a2a31979e5dce39f798ffd9476318ce2b56b13289b85e8ed5d"),
            "SDK-HMAC-SHA256 Access=AKTESTEXAMPLE000, SignedHeaders=content-type;host;user-agent;x-project-id;x-sdk-date, Signature=2197113c3a9dae150bdd6c6be129f1b8a6aae72d421a36529bcc856d186c6345",
        );
    }

    #[test]
    fn vector_c_marker_needs_encoding() {
        assert_eq!(
            canonical_query(&q("YW+/Yw==")),
            "limit=2&marker=YW%2B%2FYw%3D%3D"
        );
        check(
            &h(&[("Host", HOST), ("X-Sdk-Date", DATE)]),
            &q("YW+/Yw=="),
            Some("da3176524c69e58b27f6d31daabced406edada981e85ca872e8679f95b5b9601"),
            "SDK-HMAC-SHA256 Access=AKTESTEXAMPLE000, SignedHeaders=host;x-sdk-date, Signature=e26ae10e4a7b8369068b46f89fc575b03ccaf6619bd57e1fd09edbf48d37afb9",
        );
    }

    #[test]
    fn vector_d_security_token_is_signed() {
        check(
            &h(&[("Host", HOST), ("X-Sdk-Date", DATE), ("X-Security-Token", "TOKENEXAMPLE")]),
            &q("YWJj"),
            None,
            "SDK-HMAC-SHA256 Access=AKTESTEXAMPLE000, SignedHeaders=host;x-sdk-date;x-security-token, Signature=be55ce3149230975c264710c701332fabc48780de0d2ba555166244fb5366c68",
        );
    }

    #[test]
    fn canonical_uri_always_ends_in_slash() {
        assert_eq!(canonical_uri("/v1/a/b"), "/v1/a/b/");
        assert_eq!(canonical_uri("/v1/a%20b/"), "/v1/a%20b/");
    }

    #[test]
    fn headers_with_underscore_are_not_signed() {
        let headers = h(&[("Host", HOST), ("X-Sdk-Date", DATE), ("x_custom", "1")]);
        let parts = RequestParts {
            method: "GET",
            path: PATH,
            query: &[],
            headers: &headers,
            body: b"",
        };
        let auth = authorization(AK, &sk(), &parts).unwrap();
        assert!(auth.contains("SignedHeaders=host;x-sdk-date,"), "{auth}");
    }

    #[test]
    fn missing_date_is_an_error() {
        let headers = h(&[("Host", HOST)]);
        let parts = RequestParts {
            method: "GET",
            path: PATH,
            query: &[],
            headers: &headers,
            body: b"",
        };
        assert_eq!(
            authorization(AK, &sk(), &parts),
            Err(SignError::MissingDate)
        );
    }

    #[test]
    fn tampered_query_fails_verification() {
        let headers = h(&[("Host", HOST), ("X-Sdk-Date", DATE)]);
        let query = q("YWJj");
        let parts = RequestParts {
            method: "GET",
            path: PATH,
            query: &query,
            headers: &headers,
            body: b"",
        };
        let parsed = parse_authorization(&authorization(AK, &sk(), &parts).unwrap()).unwrap();
        let other = q("ZZZZ");
        let tampered = RequestParts {
            query: &other,
            ..parts
        };
        assert!(!verify(&parsed, &sk(), &tampered));
    }
}
