//! What the API gateway does before a handler runs: request IDs, the error formats
//! (IMS's `{"error": {...}}`, the gateway's `error_code`/`error_msg`/`request_id` and
//! CTS's `error_code`/`error_msg`), signature checking ([`authenticate`]), and the
//! common prologue every IMS route ([`prologue`]), the listing of offered images
//! ([`shared_prologue`]) and the Cloud Trace Service route ([`cts_prologue`]) start
//! with (count, latency, authenticate, injected faults).
//!
//! The query string is parsed here ([`parse_query`]) because the signature covers
//! it; handlers reuse that parser.
//!
//! It must not know the routes or what they answer on success: that is
//! `handlers`. It must not reach into [`FakeState`]'s data either: counters,
//! accounts, latency and faults are read and moved on through its methods.

// The checks return a ready `Response` as their error: it is what gets sent.
#![allow(clippy::result_large_err)]

use std::time::Duration;

use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::state::{
    cts_fault_key, shared_fault_key, Account, Canned, CtsQuery, FakeState, Fault, SharedQuery,
};
use crate::auth::credentials::Secret;
use crate::auth::signer::{self, ParsedAuthorization, RequestParts};

/// The answer of [`Fault::BrokenBody`]: a member list cut off mid-string.
const BROKEN_BODY: &str = r#"{"members": [{"member_id": "trunc"#;
/// The same for a trace list.
const BROKEN_TRACES: &str = r#"{"traces": [{"trace_id": "trunc"#;
/// The same for an image listing.
const BROKEN_IMAGES: &str = r#"{"images": [{"id": "trunc"#;

/// The service behind a route: it decides how errors and faulty bodies look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Service {
    Ims,
    /// IMS's listing of the images offered to a project: IMS errors, image bodies.
    ImsShared,
    /// Cloud Trace Service, on the same server as IMS.
    Cts,
}

/// How far `X-Sdk-Date` may be from the fake's clock, as at the real gateway.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);

pub(super) fn request_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

pub(super) fn json_response(status: StatusCode, request_id: &str, body: String) -> Response {
    (
        status,
        [
            ("content-type", "application/json"),
            ("x-request-id", request_id),
        ],
        body,
    )
        .into_response()
}

pub(super) fn ims_error(
    status: StatusCode,
    request_id: &str,
    code: &str,
    message: &str,
) -> Response {
    json_response(
        status,
        request_id,
        json!({"error": {"code": code, "message": message}}).to_string(),
    )
}

pub(super) fn gateway_error(
    status: StatusCode,
    request_id: &str,
    code: &str,
    message: &str,
) -> Response {
    json_response(
        status,
        request_id,
        json!({"error_code": code, "error_msg": message, "request_id": request_id}).to_string(),
    )
}

/// An error in CTS's format: `error_code` and `error_msg`, with no request ID in the
/// body (it travels in `X-Request-Id`).
pub(super) fn cts_error(
    status: StatusCode,
    request_id: &str,
    code: &str,
    message: &str,
) -> Response {
    json_response(
        status,
        request_id,
        json!({"error_code": code, "error_msg": message}).to_string(),
    )
}

/// An error of `service` for an injected fault.
fn injected_error(service: Service, status: StatusCode, rid: &str, message: &str) -> Response {
    match service {
        Service::Ims | Service::ImsShared => ims_error(status, rid, "IMG.0999", message),
        Service::Cts => cts_error(status, rid, "CTS.0001", message),
    }
}

pub(super) fn parse_query(raw: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Checks the signature like the API gateway; `Err` is the response to send.
pub(super) fn authenticate(
    state: &FakeState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    rid: &str,
) -> Result<(), Response> {
    check_signature(state, method, uri, headers).map_err(|reason| {
        state.count_rejected_signature();
        gateway_error(
            StatusCode::UNAUTHORIZED,
            rid,
            "APIGW.0301",
            &format!("Incorrect IAM authentication information: {reason}"),
        )
    })
}

/// The gateway's checks in its order; `Err` is why the request is refused.
fn check_signature(
    state: &FakeState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<(), &'static str> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(signer::parse_authorization)
        .ok_or("Authorization header missing or malformed")?;
    check_date(headers)?;
    let sk = check_account(state, &auth, headers)?;
    let all_headers: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let query = parse_query(uri.query());
    let parts = RequestParts {
        method: method.as_str(),
        path: uri.path(),
        query: &query,
        headers: &all_headers,
        body: b"",
    };
    if !signer::verify(&auth, &sk, &parts) {
        return Err("verify aksk signature fail");
    }
    Ok(())
}

/// `X-Sdk-Date` is present, well-formed and within [`MAX_CLOCK_SKEW`] of now.
fn check_date(headers: &HeaderMap) -> Result<(), &'static str> {
    let date = headers
        .get(signer::DATE_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or("X-Sdk-Date missing")?;
    let when = time::PrimitiveDateTime::parse(date, signer::DATE_FORMAT)
        .map_err(|_| "X-Sdk-Date malformed")?;
    let skew = (time::OffsetDateTime::now_utc() - when.assume_utc()).unsigned_abs();
    if skew > MAX_CLOCK_SKEW {
        return Err("request expired (X-Sdk-Date too far from now)");
    }
    Ok(())
}

/// The access key is known, not expired, and its security token (if it has one) is
/// sent and signed; `Ok` is its secret key.
fn check_account(
    state: &FakeState,
    auth: &ParsedAuthorization,
    headers: &HeaderMap,
) -> Result<Secret, &'static str> {
    let Some(Account { sk, token, expires }) = state.account(&auth.access_key) else {
        return Err("unknown access key");
    };
    if expires.is_some_and(|e| e <= std::time::SystemTime::now()) {
        return Err("the temporary credentials have expired");
    }
    if let Some(required) = token {
        let given = headers
            .get("x-security-token")
            .and_then(|v| v.to_str().ok());
        if given != Some(required.as_str())
            || !auth.signed_headers.iter().any(|h| h == "x-security-token")
        {
            return Err("security token missing or wrong");
        }
    }
    Ok(sk)
}

/// Common prologue: count, authenticate, apply the image's fault. `Err` is the answer.
pub(super) async fn prologue(
    state: &FakeState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    image_id: &str,
    rid: &str,
) -> Result<Option<Fault>, Response> {
    state.record_request();
    checks(state, Service::Ims, method, uri, headers, image_id, rid).await
}

/// The prologue of the trace list: the same latency, signature check and faults (those
/// of `project_id`'s traces), counted apart from the IMS requests with its `query`.
/// `Fault::FailPage` and `Fault::Flood` are left to the handler, which knows traces.
pub(super) async fn cts_prologue(
    state: &FakeState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    project_id: &str,
    query: CtsQuery,
    rid: &str,
) -> Result<Option<Fault>, Response> {
    state.record_cts_request(query);
    let key = cts_fault_key(project_id);
    checks(state, Service::Cts, method, uri, headers, &key, rid).await
}

/// The prologue of the listing of images offered to `project_id`: counted as an IMS
/// request and as a shared listing (with its `query`), then latency, signature and
/// that listing's own faults. `Fault::FailPage` and `Fault::Flood` are left to the
/// handler, which knows the offers.
pub(super) async fn shared_prologue(
    state: &FakeState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    project_id: &str,
    query: SharedQuery,
    rid: &str,
) -> Result<Option<Fault>, Response> {
    state.record_request();
    state.record_shared_request(query);
    let key = shared_fault_key(project_id);
    checks(state, Service::ImsShared, method, uri, headers, &key, rid).await
}

/// Latency, signature, then the fault kept under `fault_key`.
async fn checks(
    state: &FakeState,
    service: Service,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    fault_key: &str,
    rid: &str,
) -> Result<Option<Fault>, Response> {
    let latency = state.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    authenticate(state, method, uri, headers, rid)?;
    apply_fault(service, state.next_fault(fault_key), uri, rid).await
}

/// Answers in place of the handler for the faults that replace the whole answer
/// (`Err`), waits out a delay, and hands the others (`FailPage`, and `Flood` for
/// traces) to the handler.
async fn apply_fault(
    service: Service,
    fault: Option<Fault>,
    uri: &Uri,
    rid: &str,
) -> Result<Option<Fault>, Response> {
    match fault {
        Some(Fault::Flaky {
            status,
            retry_after,
            ..
        }) => Err(flaky_answer(service, status, retry_after, rid)),
        Some(Fault::Oversized(bytes)) => {
            let padding = "x".repeat(bytes);
            let body = match service {
                Service::Ims => {
                    json!({"members": [], "schema": "/v2/schemas/members", "padding": padding})
                }
                Service::ImsShared => json!({"images": [], "padding": padding}),
                Service::Cts => {
                    json!({"traces": [], "meta_data": {"count": 0, "marker": null}, "padding": padding})
                }
            };
            Err(json_response(StatusCode::OK, rid, body.to_string()))
        }
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Err(injected_error(service, status, rid, "injected fault"))
        }
        Some(Fault::Throttle) => Err(throttled(rid)),
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            Ok(None)
        }
        // An empty script answers normally.
        Some(Fault::Script(answers)) => match answers.first() {
            Some(a) => Err(scripted_answer(a, rid)),
            None => Ok(None),
        },
        Some(Fault::Flood(per_page)) if service == Service::Ims => {
            Err(flood_page(per_page, uri, rid))
        }
        Some(Fault::BrokenBody) => {
            let body = match service {
                Service::Ims => BROKEN_BODY,
                Service::ImsShared => BROKEN_IMAGES,
                Service::Cts => BROKEN_TRACES,
            };
            Err(json_response(StatusCode::OK, rid, body.into()))
        }
        Some(Fault::MissingList) => Err(json_response(StatusCode::OK, rid, "{}".into())),
        other => Ok(other),
    }
}

/// The gateway's throttling answer (429, `APIGW.0308`).
fn throttled(rid: &str) -> Response {
    gateway_error(
        StatusCode::TOO_MANY_REQUESTS,
        rid,
        "APIGW.0308",
        "The throttling threshold has been reached",
    )
}

/// A transient failure of [`Fault::Flaky`]: 429 as the gateway throttles, any other
/// status as the service's error; with `Retry-After` if set.
fn flaky_answer(service: Service, status: u16, retry_after: Option<u64>, rid: &str) -> Response {
    let mut resp = if status == 429 {
        throttled(rid)
    } else {
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        injected_error(service, code, rid, "injected transient fault")
    };
    if let Some(secs) = retry_after {
        resp.headers_mut().insert("retry-after", secs.into());
    }
    resp
}

/// One canned answer of [`Fault::Script`]; headers that are not valid HTTP are left out.
fn scripted_answer(a: &Canned, rid: &str) -> Response {
    let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::OK);
    let mut resp = json_response(status, rid, a.body.clone());
    for (k, v) in &a.headers {
        if let (Ok(k), Ok(v)) = (
            axum::http::HeaderName::from_bytes(k.as_bytes()),
            axum::http::HeaderValue::from_str(v),
        ) {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}

/// A page of [`Fault::Flood`]: `per_page` new members from the marker on, and a
/// next marker, whatever `limit` says.
fn flood_page(per_page: usize, uri: &Uri, rid: &str) -> Response {
    let from: usize = uri
        .query()
        .and_then(|q| {
            parse_query(Some(q))
                .into_iter()
                .find(|(k, _)| k == "marker")
                .and_then(|(_, v)| v.parse().ok())
        })
        .unwrap_or(0);
    let members: Vec<serde_json::Value> = (from..from + per_page)
        .map(|i| json!({"member_id": format!("{i:032x}"), "member_type": "project", "status": "accepted"}))
        .collect();
    let body =
        json!({"members": members, "page_info": {"next_marker": (from + per_page).to_string()}});
    json_response(StatusCode::OK, rid, body.to_string())
}

pub(super) fn query_value<'q>(query: &'q [(String, String)], key: &str) -> Option<&'q str> {
    query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// `limit` as IMS takes it: 1..=1000, `default` when absent; `Err` is the 400 answer.
pub(super) fn parse_limit(
    value: Option<&str>,
    default: usize,
    rid: &str,
) -> Result<usize, Response> {
    match value.map(str::parse::<usize>) {
        None => Ok(default),
        Some(Ok(n)) if (1..=1000).contains(&n) => Ok(n),
        Some(_) => Err(ims_error(
            StatusCode::BAD_REQUEST,
            rid,
            "IMG.0001",
            "limit must be between 1 and 1000",
        )),
    }
}
