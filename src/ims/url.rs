//! Request URLs: paths built from validated IDs, one percent-encoded segment each, and
//! queries encoded the way the SDKs encode them (so that signatures match).

use reqwest::Url;

use super::error::ApiError;
use crate::auth::signer;

/// Percent-encodes one path segment. `.` and `..` cannot be made safe in a URL path
/// (parsers resolve them even when encoded), so they are refused.
fn push_segment(path: &mut String, segment: &str) -> Result<(), String> {
    if segment.is_empty() || segment == "." || segment == ".." {
        return Err(format!("{segment:?} cannot be used as a path segment"));
    }
    path.push('/');
    path.push_str(&signer::encode(segment));
    Ok(())
}

/// The URL of `segments` under the target's endpoint, with `query` encoded the way
/// the SDKs encode it (`%20` for space, `%2B` for `+`).
pub fn build_url(base: &Url, segments: &[&str], query: &[(&str, &str)]) -> Result<Url, String> {
    let mut path = base.path().trim_end_matches('/').to_string();
    for s in segments {
        push_segment(&mut path, s)?;
    }
    let mut url = base.clone();
    url.set_path(&path);
    if query.is_empty() {
        url.set_query(None);
    } else {
        let q: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{}={}", signer::encode(k), signer::encode(v)))
            .collect();
        url.set_query(Some(&q.join("&")));
    }
    Ok(url)
}

/// `host` or `host:port`, as hyper will send it in the Host header.
pub fn host_header(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// [`build_url`] for `operation`: a URL that cannot be built is that call's error.
pub fn url(
    operation: &'static str,
    base: &Url,
    segments: &[&str],
    query: &[(&str, &str)],
) -> Result<Url, ApiError> {
    build_url(base, segments, query).map_err(|message| ApiError::Url { operation, message })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::Url;

    #[test]
    fn ids_cannot_change_path_or_query() {
        let base = Url::parse("https://ims.example.com").unwrap();
        let url = build_url(&base, &["v1", "p", "cloudimages", "../x?y", "members"], &[]).unwrap();
        assert_eq!(url.path(), "/v1/p/cloudimages/..%2Fx%3Fy/members");
        assert_eq!(url.query(), None);
        assert!(build_url(&base, &["v1", ".."], &[]).is_err());
    }

    #[test]
    fn marker_is_encoded_like_the_sdk() {
        let base = Url::parse("http://127.0.0.1:8080/prefix/").unwrap();
        let url = build_url(&base, &["v1"], &[("limit", "2"), ("marker", "YW+/Yw==")]).unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:8080/prefix/v1?limit=2&marker=YW%2B%2FYw%3D%3D"
        );
        let pairs: Vec<_> = url.query_pairs().collect();
        assert_eq!(pairs[1].1, "YW+/Yw==");
        assert_eq!(host_header(&url), "127.0.0.1:8080");
    }
}
