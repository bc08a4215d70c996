//! The JSON API: `GET /api/v1/shares` (filters and paging as query parameters),
//! `GET /api/v1/images`, `GET /api/v1/changes` and `GET /api/v1/incoming` (the images
//! shared with us, filtered and paged the same way); and the share browser
//! `GET /shares` over the same filters. Served behind the same TLS, basic auth and
//! request cap as `/metrics`; the rows are [`crate::render::shares`]' and
//! [`crate::render::offers`]'.

use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::context::AppState;

use crate::render::html;
use crate::render::offers::{self, IncomingFilter};
use crate::render::shares::{self, ShareFilter, DEFAULT_CHANGES, DEFAULT_PER_PAGE};
use crate::state::MAX_CHANGES;

/// A query string's parameters, decoded. Unknown or repeated parameters are refused (a
/// typo must not silently widen a filter), and so is a value of the wrong form. The
/// refusal names the parameter and what is wrong with it but never echoes what the
/// client sent (no value, no unknown name): an error body is no place for input.
struct Params {
    given: Vec<(&'static str, String)>,
}

impl Params {
    fn parse(query: Option<&str>, known: &'static [&'static str]) -> Result<Params, String> {
        let mut given: Vec<(&'static str, String)> = Vec::new();
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let Some(name) = known.iter().find(|n| **n == k) else {
                return Err(if known.is_empty() {
                    "unknown query parameter: this endpoint takes none\n".to_string()
                } else {
                    format!(
                        "unknown query parameter: this endpoint takes {}\n",
                        known.join(", ")
                    )
                });
            };
            if given.iter().any(|(n, _)| n == name) {
                return Err(format!("query parameter {name}: given more than once\n"));
            }
            given.push((name, v.into_owned()));
        }
        Ok(Params { given })
    }

    /// The value of `name`; an empty one is no value ("any").
    fn text(&self, name: &str) -> Option<&str> {
        self.given
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// A whole number of at least `min`.
    fn number(&self, name: &str, min: usize) -> Result<Option<usize>, String> {
        self.text(name)
            .map(|v| {
                v.parse::<usize>()
                    .ok()
                    .filter(|n| *n >= min)
                    .ok_or_else(|| match min {
                        0 => format!("query parameter {name}: must be a whole number\n"),
                        _ => format!(
                            "query parameter {name}: must be a whole number of at least {min}\n"
                        ),
                    })
            })
            .transpose()
    }

    /// `true` or `false`.
    fn flag(&self, name: &str) -> Result<Option<bool>, String> {
        self.text(name)
            .map(|v| match v {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(format!("query parameter {name}: must be true or false\n")),
            })
            .transpose()
    }
}

/// The query parameters of `/api/v1/shares`.
const SHARES_PARAMS: &[&str] = &["image", "type", "status", "unexpected", "page", "per_page"];
/// The query parameters of `/shares`: the shares', and the filter of its "Shared with
/// us" section (`incoming_status`: `status` is the shares').
const PAGE_PARAMS: &[&str] = &[
    "image",
    "type",
    "status",
    "unexpected",
    "page",
    "per_page",
    "owner",
    "incoming_status",
];
/// The query parameters of `/api/v1/incoming`.
const INCOMING_PARAMS: &[&str] = &["owner", "status", "trusted", "page", "per_page"];

/// The filter and the page asked for (empty values mean "any").
fn shares_query(query: Option<&str>) -> Result<(ShareFilter, usize, usize), String> {
    shares_params(&Params::parse(query, SHARES_PARAMS)?)
}

/// The share filter and the page of `p`.
fn shares_params(p: &Params) -> Result<(ShareFilter, usize, usize), String> {
    let filter = ShareFilter {
        image: p.text("image").map(str::to_string),
        member_type: p.text("type").map(str::to_string),
        status: p.text("status").map(str::to_string),
        unexpected_only: p.flag("unexpected")?.unwrap_or(false),
    }
    .canonical();
    Ok((
        filter,
        p.number("page", 0)?.unwrap_or(1),
        p.number("per_page", 0)?.unwrap_or(DEFAULT_PER_PAGE),
    ))
}

/// A refused request: 400 with a plain-text reason.
fn bad_request(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message,
    )
        .into_response()
}

fn json(body: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            bytes,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// The page's filters: the shares', and the section's of the images shared with us.
fn page_query(query: Option<&str>) -> Result<(ShareFilter, IncomingFilter, usize, usize), String> {
    let p = Params::parse(query, PAGE_PARAMS)?;
    let (filter, page, per_page) = shares_params(&p)?;
    let incoming = IncomingFilter {
        owner: p.text("owner").map(str::to_string),
        status: p.text("incoming_status").map(str::to_string),
        trusted: None,
    }
    .canonical();
    Ok((filter, incoming, page, per_page))
}

/// The filter and the page of `/api/v1/incoming` (empty values mean "any").
fn incoming_query(query: Option<&str>) -> Result<(IncomingFilter, usize, usize), String> {
    let p = Params::parse(query, INCOMING_PARAMS)?;
    let filter = IncomingFilter {
        owner: p.text("owner").map(str::to_string),
        status: p.text("status").map(str::to_string),
        trusted: p.flag("trusted")?,
    }
    .canonical();
    Ok((
        filter,
        p.number("page", 0)?.unwrap_or(1),
        p.number("per_page", 0)?.unwrap_or(DEFAULT_PER_PAGE),
    ))
}

pub(super) async fn shares(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    match shares_query(query.as_deref()) {
        Ok((filter, page, per_page)) => json(&shares::shares(
            &state.store.snapshot(),
            &filter,
            page,
            per_page,
        )),
        Err(message) => bad_request(message),
    }
}

/// Nothing but the page's own inline style: no script, no external asset, no frame.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
                   base-uri 'none'; frame-ancestors 'none'";

/// The share browser.
pub(super) async fn shares_page(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Response {
    let (filter, incoming, page, per_page) = match page_query(query.as_deref()) {
        Ok(q) => q,
        Err(message) => return bad_request(message),
    };
    let snapshot = state.store.snapshot();
    let changes = shares::changes(state.store.changes(), &filter, DEFAULT_CHANGES);
    // A page of a large fleet is CPU work: not on an async worker.
    let body = tokio::task::spawn_blocking(move || {
        html::shares_page(&snapshot, &changes, &filter, &incoming, page, per_page)
    })
    .await;
    match body {
        Ok(body) => html_response(body),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response(),
    }
}

/// An HTML page of ours, under the strict policy.
pub(super) fn html_response(body: String) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// The most recent member changes (and images no longer monitored), newest first. `limit` is at least 1 (`limit=0` is
/// a 400: a client meaning "no limit" must not get an empty list); above
/// [`MAX_CHANGES`] it lists them all.
pub(super) async fn changes(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let parsed = Params::parse(query.as_deref(), &["image", "limit"]).and_then(|p| {
        let image = p.text("image").map(str::to_string);
        Ok((image, p.number("limit", 1)?))
    });
    let (image, limit) = match parsed {
        Ok(q) => q,
        Err(message) => return bad_request(message),
    };
    let filter = ShareFilter {
        image,
        ..ShareFilter::default()
    };
    let limit = limit.unwrap_or(DEFAULT_CHANGES).min(MAX_CHANGES);
    json(&shares::changes(state.store.changes(), &filter, limit))
}

/// The images shared with us, untrusted owners first, filtered and paged.
pub(super) async fn incoming(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    match incoming_query(query.as_deref()) {
        Ok((filter, page, per_page)) => json(&offers::incoming(
            &state.store.snapshot(),
            &filter,
            page,
            per_page,
        )),
        Err(message) => bad_request(message),
    }
}

/// Every image; the endpoint takes no parameter, so any is a 400 like elsewhere.
pub(super) async fn images(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    if let Err(message) = Params::parse(query.as_deref(), &[]) {
        return bad_request(message);
    }
    json(&shares::images(&state.store.snapshot()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SVG: &str = "%3Csvg%20onload%3Dalert(1)%3E";

    #[test]
    fn query_errors_name_the_parameter_and_echo_nothing() {
        for (query, names) in [
            (format!("image={SVG}&page=x"), "page"),
            (format!("per_page={SVG}"), "per_page"),
            (format!("unexpected={SVG}"), "unexpected"),
            (format!("{SVG}=1"), "unknown"),
            (format!("type=a&type={SVG}"), "type"),
        ] {
            let Err(message) = shares_query(Some(&query)) else {
                panic!("{query} is refused");
            };
            assert!(message.contains(names), "{query}: {message}");
            for echo in ["svg", "alert", "%3C"] {
                assert!(!message.contains(echo), "{query}: {message}");
            }
        }
        let Err(message) = Params::parse(Some(SVG), &[]) else {
            panic!("no parameter is known")
        };
        assert_eq!(
            message,
            "unknown query parameter: this endpoint takes none\n"
        );
    }

    #[test]
    fn queries_parse_as_before() {
        let (filter, page, per_page) = shares_query(Some(
            "image=a+b%26c&type=Project&status=ACCEPTED&unexpected=true&page=2&per_page=5",
        ))
        .unwrap();
        assert_eq!(
            filter,
            ShareFilter {
                image: Some("a b&c".into()),
                member_type: Some("project".into()),
                status: Some("accepted".into()),
                unexpected_only: true,
            }
        );
        assert_eq!((page, per_page), (2, 5));
        // Empty values (the page's form sends them) mean "any".
        let (filter, page, per_page) =
            shares_query(Some("image=&type=&status=&unexpected=&page=&per_page=")).unwrap();
        assert_eq!(filter, ShareFilter::default());
        assert_eq!((page, per_page), (1, DEFAULT_PER_PAGE));
        assert!(shares_query(None).is_ok());
        assert!(shares_query(Some("")).is_ok());
        // An undocumented status is kept as it is.
        let (filter, _, _) = shares_query(Some("status=Unknown")).unwrap();
        assert_eq!(filter.status.as_deref(), Some("Unknown"));
    }

    #[test]
    fn incoming_queries_parse_and_refuse_like_the_shares() {
        let (filter, page, per_page) = incoming_query(Some(
            "owner=a%26b&status=PENDING&trusted=false&page=2&per_page=5",
        ))
        .unwrap();
        assert_eq!(
            filter,
            IncomingFilter {
                owner: Some("a&b".into()),
                status: Some("pending".into()),
                trusted: Some(false),
            }
        );
        assert_eq!((page, per_page), (2, 5));
        let (filter, _, _) = incoming_query(Some("owner=&status=&trusted=")).unwrap();
        assert_eq!(filter, IncomingFilter::default());
        for (query, names) in [
            (format!("trusted={SVG}"), "trusted"),
            (format!("page={SVG}"), "page"),
            (format!("{SVG}=1"), "unknown"),
            ("image=x".to_string(), "unknown"),
            (format!("owner=a&owner={SVG}"), "owner"),
        ] {
            let Err(message) = incoming_query(Some(&query)) else {
                panic!("{query} is refused");
            };
            assert!(message.contains(names), "{query}: {message}");
            for echo in ["svg", "alert", "%3C"] {
                assert!(!message.contains(echo), "{query}: {message}");
            }
        }
        // The page takes the section's filter; the shares' API does not.
        let (_, incoming, _, _) = page_query(Some("owner=o&incoming_status=Accepted")).unwrap();
        assert_eq!(incoming.status.as_deref(), Some("accepted"));
        assert!(shares_query(Some("owner=o")).is_err());
    }

    #[test]
    fn a_number_has_its_minimum() {
        let p = Params::parse(Some("limit=0&page=0"), &["limit", "page"]).unwrap();
        assert_eq!(
            p.number("limit", 1),
            Err("query parameter limit: must be a whole number of at least 1\n".into())
        );
        assert_eq!(p.number("page", 0), Ok(Some(0)));
        let p = Params::parse(Some("limit=-1"), &["limit"]).unwrap();
        assert!(p.number("limit", 1).is_err());
    }
}
