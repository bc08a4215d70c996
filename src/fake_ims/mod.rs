//! A fake of the IMS API on loopback, for the tests, the demo and the benchmark.
//!
//! It speaks the real wire format (checked against the official Python SDK): it
//! verifies SDK-HMAC-SHA256 signatures (wrong SK, missing header, stale date and a
//! missing security token are refused as the API gateway does), pages member lists
//! with opaque Base64 markers, and can inject faults per image.

// Handlers return a ready `Response` as their error: it is what gets sent.
#![allow(clippy::result_large_err)]

pub mod demo;
pub mod metadata;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine;
use serde_json::json;

use crate::auth::credentials::Secret;
use crate::auth::signer::{self, RequestParts};
use crate::ims::model::{Member, MemberList, PageInfo};

/// How far `X-Sdk-Date` may be from the fake's clock, as at the real gateway.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);
const DEFAULT_LIMIT: usize = 500;
const DEFAULT_IMAGES_LIMIT: usize = 25;

/// A fault to inject into the answers for one image.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Answer every request with this status and an IMS-style error body.
    Status(u16),
    /// Answer 429 with the gateway's throttling error `APIGW.0308`.
    Throttle,
    /// Wait this long before answering normally.
    Delay(Duration),
    /// Answer 200 with a truncated JSON body.
    BrokenBody,
    /// Answer the `n`th page (0-based) of a member list with a 500; other pages are fine.
    FailPage(usize),
    /// Answer the next `failures` requests with `status` (429 as the gateway's
    /// throttling error), with `Retry-After: retry_after` seconds if set; then
    /// answer normally and clear the fault.
    Flaky {
        failures: u32,
        status: u16,
        retry_after: Option<u64>,
    },
    /// Answer 200 with a valid member list padded to at least this many bytes.
    Oversized(usize),
    /// Answer with these canned responses in order, after checking the signature;
    /// the last one repeats. For answers no honest server gives.
    Script(Vec<Canned>),
    /// Ignore `limit`: every page has this many new members and a next marker, for
    /// ever (a server that would make the exporter hold millions of members).
    Flood(usize),
}

/// One scripted answer of [`Fault::Script`].
#[derive(Debug, Clone, PartialEq)]
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Canned {
    /// A 200 with a JSON body.
    pub fn ok(body: impl Into<String>) -> Canned {
        Canned {
            status: 200,
            headers: Vec::new(),
            body: body.into(),
        }
    }
}

#[derive(Debug, Default)]
struct FakeImage {
    name: String,
    /// Attributes discovery filters on; `None` reads as `private`.
    imagetype: Option<String>,
    visibility: Option<String>,
    /// `key.value` strings, as the `tag` filter takes them.
    tags: Vec<String>,
    members: BTreeMap<String, Member>,
}

#[derive(Debug, Default)]
struct Inner {
    /// AK → (SK, required security token).
    accounts: HashMap<String, Account>,
    /// IAM projects: (ID, name).
    projects: Vec<(String, String)>,
    /// (project_id, image_id) → image.
    images: BTreeMap<(String, String), FakeImage>,
    faults: HashMap<String, Fault>,
    requests: u64,
    /// When each request arrived, for rate checks.
    request_times: Vec<tokio::time::Instant>,
    rejected_signatures: u64,
    /// Added to every answer about members and images (see [`FakeState::set_latency`]).
    latency: Duration,
}

/// Shared, mutable state of the fake; tests change it while the exporter polls.
/// A key pair the fake accepts; temporary ones carry a token and expire.
#[derive(Debug, Clone)]
struct Account {
    sk: Secret,
    token: Option<String>,
    expires: Option<std::time::SystemTime>,
}

#[derive(Debug, Default, Clone)]
pub struct FakeState(Arc<Mutex<Inner>>);

impl FakeState {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A test that panicked while holding the lock must not hide its own failure.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn add_account(&self, access_key: &str, secret_key: &str, security_token: Option<&str>) {
        let account = Account {
            sk: Secret::new(secret_key),
            token: security_token.map(str::to_string),
            expires: None,
        };
        self.lock().accounts.insert(access_key.into(), account);
    }

    /// Temporary credentials, refused after `expires`.
    pub fn add_temporary_account(
        &self,
        access_key: &str,
        secret_key: &str,
        token: &str,
        expires: std::time::SystemTime,
    ) {
        let account = Account {
            sk: Secret::new(secret_key),
            token: Some(token.into()),
            expires: Some(expires),
        };
        self.lock().accounts.insert(access_key.into(), account);
    }

    /// An IAM project the fake's `GET /v3/projects` lists.
    pub fn add_project(&self, project_id: &str, name: &str) {
        self.lock().projects.push((project_id.into(), name.into()));
    }

    pub fn remove_account(&self, access_key: &str) {
        self.lock().accounts.remove(access_key);
    }

    pub fn add_image(&self, project_id: &str, image_id: &str, name: &str) {
        self.lock()
            .images
            .entry((project_id.into(), image_id.into()))
            .or_default()
            .name = name.into();
    }

    /// Sets what `GET /v2/cloudimages` filters on (`__imagetype`, `visibility`, `tag`).
    pub fn set_image_attributes(
        &self,
        project_id: &str,
        image_id: &str,
        imagetype: &str,
        visibility: &str,
        tags: &[&str],
    ) {
        let mut inner = self.lock();
        let image = inner
            .images
            .entry((project_id.into(), image_id.into()))
            .or_default();
        image.imagetype = Some(imagetype.into());
        image.visibility = Some(visibility.into());
        image.tags = tags.iter().map(|t| t.to_string()).collect();
    }

    pub fn remove_image(&self, project_id: &str, image_id: &str) {
        self.lock()
            .images
            .remove(&(project_id.into(), image_id.into()));
    }

    /// Adds or replaces a member; the image is created if needed.
    pub fn put_member(&self, project_id: &str, member: Member) {
        let image_id = member.image_id.clone().unwrap_or_default();
        self.lock()
            .images
            .entry((project_id.into(), image_id))
            .or_default()
            .members
            .insert(member.member_id.clone(), member);
    }

    pub fn remove_member(&self, project_id: &str, image_id: &str, member_id: &str) -> bool {
        self.lock()
            .images
            .get_mut(&(project_id.into(), image_id.into()))
            .and_then(|i| i.members.remove(member_id))
            .is_some()
    }

    pub fn members(&self, project_id: &str, image_id: &str) -> Vec<Member> {
        self.lock()
            .images
            .get(&(project_id.into(), image_id.into()))
            .map(|i| i.members.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Injects `fault` into every answer about `image_id`, or — given a project ID —
    /// into that project's image listing (`GET /v2/cloudimages`). `None` clears it.
    pub fn set_fault(&self, image_id: &str, fault: Option<Fault>) {
        let mut inner = self.lock();
        match fault {
            Some(f) => inner.faults.insert(image_id.into(), f),
            None => inner.faults.remove(image_id),
        };
    }

    /// When each request so far arrived.
    pub fn request_times(&self) -> Vec<tokio::time::Instant> {
        self.lock().request_times.clone()
    }

    /// Requests answered so far (any outcome).
    pub fn requests(&self) -> u64 {
        self.lock().requests
    }

    /// Requests refused for a bad or missing signature.
    pub fn rejected_signatures(&self) -> u64 {
        self.lock().rejected_signatures
    }

    /// Delays every answer about members and images (list, detail, image listing) by
    /// `latency` before it is sent, like a distant API; zero (the default) for none.
    pub fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }
}

/// A member as IMS returns it, for building fixtures.
pub fn member(
    image_id: &str,
    member_id: &str,
    member_type: &str,
    status: &str,
    created_at: &str,
    updated_at: &str,
    urn: Option<&str>,
) -> Member {
    Member {
        member_id: member_id.into(),
        member_type: Some(member_type.into()),
        status: Some(status.into()),
        created_at: Some(created_at.into()),
        updated_at: Some(updated_at.into()),
        image_id: Some(image_id.into()),
        schema: Some("/v2/schemas/member".into()),
        urn: urn.map(str::to_string),
    }
}

/// A running fake; stopped by [`FakeIms::stop`] or, at the latest, when dropped.
pub struct FakeIms {
    addr: SocketAddr,
    /// `http`, or `https` when started with a web config that enables TLS.
    scheme: &'static str,
    pub state: FakeState,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeIms {
    /// Starts the fake on an ephemeral port of 127.0.0.1.
    pub async fn start(state: FakeState) -> std::io::Result<FakeIms> {
        Self::start_on("127.0.0.1:0".parse().map_err(std::io::Error::other)?, state).await
    }

    pub async fn start_on(addr: SocketAddr, state: FakeState) -> std::io::Result<FakeIms> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let app = router(state.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = rx.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "fake IMS server failed");
            }
        });
        Ok(FakeIms {
            addr,
            scheme: "http",
            state,
            shutdown: Some(tx),
            task,
        })
    }

    /// Starts the fake on 127.0.0.1 served the way the exporter serves itself, with a
    /// web config (exporter-toolkit format) that enables TLS: for testing private CAs
    /// and proxies.
    pub async fn start_tls(
        state: FakeState,
        web_config: std::path::PathBuf,
    ) -> std::io::Result<FakeIms> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = router(state.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let options = crate::http::ServeOptions {
            web_config_file: Some(web_config),
            max_requests: 0,
        };
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = rx.await;
            };
            if let Err(e) = crate::http::serve(listener, app, options, shutdown).await {
                tracing::error!(error = %e, "fake IMS server failed");
            }
        });
        Ok(FakeIms {
            addr,
            scheme: "https",
            state,
            shutdown: Some(tx),
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL to use as a target's `endpoint`.
    pub fn endpoint(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // Delayed answers would hold graceful shutdown; don't wait for them forever.
        if tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}

impl Drop for FakeIms {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn router(state: FakeState) -> Router {
    Router::new()
        .route(
            "/v1/{project_id}/cloudimages/{image_id}/members",
            get(list_members),
        )
        .route(
            "/v1/{project_id}/cloudimages/{image_id}/members/{member_id}",
            get(get_member),
        )
        .route("/v2/cloudimages", get(list_images))
        .route("/v3/projects", get(list_projects))
        .fallback(not_found)
        .with_state(state)
}

fn request_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn json_response(status: StatusCode, request_id: &str, body: String) -> Response {
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

fn ims_error(status: StatusCode, request_id: &str, code: &str, message: &str) -> Response {
    json_response(
        status,
        request_id,
        json!({"error": {"code": code, "message": message}}).to_string(),
    )
}

fn gateway_error(status: StatusCode, request_id: &str, code: &str, message: &str) -> Response {
    json_response(
        status,
        request_id,
        json!({"error_code": code, "error_msg": message, "request_id": request_id}).to_string(),
    )
}

async fn not_found(uri: Uri) -> Response {
    ims_error(
        StatusCode::NOT_FOUND,
        &request_id(),
        "IMG.0001",
        &format!("no such API: {}", uri.path()),
    )
}

fn query_value<'q>(query: &'q [(String, String)], key: &str) -> Option<&'q str> {
    query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// `limit` as IMS takes it: 1..=1000, `default` when absent; `Err` is the 400 answer.
fn parse_limit(value: Option<&str>, default: usize, rid: &str) -> Result<usize, Response> {
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

fn parse_query(raw: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Checks the signature like the API gateway; `Err` is the response to send.
fn authenticate(
    state: &FakeState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    rid: &str,
) -> Result<(), Response> {
    let deny = |message: &str| {
        state.lock().rejected_signatures += 1;
        Err(gateway_error(
            StatusCode::UNAUTHORIZED,
            rid,
            "APIGW.0301",
            message,
        ))
    };
    let Some(auth) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(signer::parse_authorization)
    else {
        return deny(
            "Incorrect IAM authentication information: Authorization header missing or malformed",
        );
    };
    let Some(date) = headers
        .get(signer::DATE_HEADER)
        .and_then(|v| v.to_str().ok())
    else {
        return deny("Incorrect IAM authentication information: X-Sdk-Date missing");
    };
    let Ok(when) = time::PrimitiveDateTime::parse(date, signer::DATE_FORMAT) else {
        return deny("Incorrect IAM authentication information: X-Sdk-Date malformed");
    };
    let skew = (time::OffsetDateTime::now_utc() - when.assume_utc()).unsigned_abs();
    if skew > MAX_CLOCK_SKEW {
        return deny("Incorrect IAM authentication information: request expired (X-Sdk-Date too far from now)");
    }
    let account = state.lock().accounts.get(&auth.access_key).cloned();
    let Some(Account { sk, token, expires }) = account else {
        return deny("Incorrect IAM authentication information: unknown access key");
    };
    if expires.is_some_and(|e| e <= std::time::SystemTime::now()) {
        return deny(
            "Incorrect IAM authentication information: the temporary credentials have expired",
        );
    }
    if let Some(required) = token {
        let given = headers
            .get("x-security-token")
            .and_then(|v| v.to_str().ok());
        if given != Some(required.as_str())
            || !auth.signed_headers.iter().any(|h| h == "x-security-token")
        {
            return deny(
                "Incorrect IAM authentication information: security token missing or wrong",
            );
        }
    }
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
        return deny("Incorrect IAM authentication information: verify aksk signature fail");
    }
    Ok(())
}

/// Common prologue: count, authenticate, apply the image's fault. `Err` is the answer.
async fn prologue(
    state: &FakeState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    image_id: &str,
    rid: &str,
) -> Result<Option<Fault>, Response> {
    {
        let mut inner = state.lock();
        inner.requests += 1;
        inner.request_times.push(tokio::time::Instant::now());
    }
    let latency = state.lock().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    authenticate(state, method, uri, headers, rid)?;
    let fault = {
        let mut inner = state.lock();
        let fault = inner.faults.get(image_id).cloned();
        // A script moves on to its next answer (the last one stays).
        if let Some(Fault::Script(answers)) = &fault {
            if answers.len() > 1 {
                let rest = answers[1..].to_vec();
                inner.faults.insert(image_id.into(), Fault::Script(rest));
            }
        }
        // A flaky fault counts itself down and clears when spent.
        if let Some(Fault::Flaky {
            failures,
            status,
            retry_after,
        }) = fault.clone()
        {
            if failures <= 1 {
                inner.faults.remove(image_id);
            } else {
                inner.faults.insert(
                    image_id.into(),
                    Fault::Flaky {
                        failures: failures - 1,
                        status,
                        retry_after,
                    },
                );
            }
        }
        fault
    };
    match fault {
        Some(Fault::Flaky {
            status,
            retry_after,
            ..
        }) => {
            let mut resp = if status == 429 {
                gateway_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    rid,
                    "APIGW.0308",
                    "The throttling threshold has been reached",
                )
            } else {
                let code =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                ims_error(code, rid, "IMG.0999", "injected transient fault")
            };
            if let Some(secs) = retry_after {
                resp.headers_mut().insert("retry-after", secs.into());
            }
            Err(resp)
        }
        Some(Fault::Oversized(bytes)) => {
            let padding = "x".repeat(bytes);
            let body = json!({"members": [], "schema": "/v2/schemas/members", "padding": padding});
            Err(json_response(StatusCode::OK, rid, body.to_string()))
        }
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Err(ims_error(status, rid, "IMG.0999", "injected fault"))
        }
        Some(Fault::Throttle) => Err(gateway_error(
            StatusCode::TOO_MANY_REQUESTS,
            rid,
            "APIGW.0308",
            "The throttling threshold has been reached",
        )),
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            Ok(None)
        }
        Some(Fault::Script(answers)) => {
            let Some(a) = answers.first() else {
                return Ok(None);
            };
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
            Err(resp)
        }
        Some(Fault::Flood(per_page)) => {
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
            let body = json!({"members": members, "page_info": {"next_marker": (from + per_page).to_string()}});
            Err(json_response(StatusCode::OK, rid, body.to_string()))
        }
        Some(Fault::BrokenBody) => Err(json_response(
            StatusCode::OK,
            rid,
            r#"{"members": [{"member_id": "trunc"#.into(),
        )),
        other => Ok(other),
    }
}

async fn list_members(
    State(state): State<FakeState>,
    Path((project_id, image_id)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let rid = request_id();
    let fault = match prologue(&state, &method, &uri, &headers, &image_id, &rid).await {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let query = parse_query(uri.query());
    let get = |k: &str| query_value(&query, k);
    let limit = match parse_limit(get("limit"), DEFAULT_LIMIT, &rid) {
        Ok(n) => n,
        Err(resp) => return resp,
    };
    // Markers are opaque to clients: Base64 of the last member ID of the previous page.
    let after = match get("marker") {
        None | Some("") => None,
        Some(m) => match base64::engine::general_purpose::STANDARD
            .decode(m)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
        {
            Some(id) => Some(id),
            None => {
                return ims_error(
                    StatusCode::BAD_REQUEST,
                    &rid,
                    "IMG.0001",
                    "marker is not valid Base64",
                )
            }
        },
    };
    let inner = state.lock();
    let Some(image) = inner.images.get(&(project_id, image_id.clone())) else {
        return ims_error(
            StatusCode::NOT_FOUND,
            &rid,
            "IMG.0027",
            &format!("image {image_id} not found"),
        );
    };
    let page_index = after
        .as_ref()
        .map(|a| image.members.range(..=a.clone()).count().div_ceil(limit))
        .unwrap_or(0);
    if fault == Some(Fault::FailPage(page_index)) {
        return ims_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &rid,
            "IMG.0999",
            "injected page fault",
        );
    }
    let rest: Vec<&Member> = match &after {
        Some(a) => image
            .members
            .range::<String, _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded))
            .map(|(_, m)| m)
            .collect(),
        None => image.members.values().collect(),
    };
    let page: Vec<Member> = rest.iter().take(limit).map(|m| (*m).clone()).collect();
    let more = rest.len() > limit;
    let next_marker = more.then(|| {
        base64::engine::general_purpose::STANDARD
            .encode(page.last().map(|m| m.member_id.as_str()).unwrap_or(""))
    });
    // Like the real API, a listing that fits one page may carry no page_info at all.
    let page_info = (after.is_some() || more).then_some(PageInfo {
        next_marker,
        current_count: Some(page.len() as u64),
    });
    let body = MemberList {
        members: page,
        schema: Some("/v2/schemas/members".into()),
        page_info,
    };
    drop(inner);
    json_response(
        StatusCode::OK,
        &rid,
        serde_json::to_string(&body).unwrap_or_default(),
    )
}

async fn get_member(
    State(state): State<FakeState>,
    Path((project_id, image_id, member_id)): Path<(String, String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let rid = request_id();
    if let Err(resp) = prologue(&state, &method, &uri, &headers, &image_id, &rid).await {
        return resp;
    }
    let inner = state.lock();
    let Some(image) = inner.images.get(&(project_id, image_id.clone())) else {
        return ims_error(
            StatusCode::NOT_FOUND,
            &rid,
            "IMG.0027",
            &format!("image {image_id} not found"),
        );
    };
    match image.members.get(&member_id) {
        Some(m) => json_response(
            StatusCode::OK,
            &rid,
            serde_json::to_string(m).unwrap_or_default(),
        ),
        None => ims_error(
            StatusCode::NOT_FOUND,
            &rid,
            "IMG.0206",
            &format!("image {image_id} is not shared with {member_id}"),
        ),
    }
}

/// `GET /v2/cloudimages`: the images of the project named by `X-Project-Id`, filtered
/// and paged like IMS (`marker` = the last image ID of the previous page).
async fn list_images(
    State(state): State<FakeState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let rid = request_id();
    let Some(project_id) = headers
        .get("x-project-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
    else {
        state.lock().requests += 1;
        return ims_error(
            StatusCode::BAD_REQUEST,
            &rid,
            "IMG.0001",
            "X-Project-Id header is required",
        );
    };
    if let Err(resp) = prologue(&state, &method, &uri, &headers, &project_id, &rid).await {
        return resp;
    }
    let query = parse_query(uri.query());
    let get = |k: &str| query_value(&query, k);
    let limit = match parse_limit(get("limit"), DEFAULT_IMAGES_LIMIT, &rid) {
        Ok(n) => n,
        Err(resp) => return resp,
    };
    let inner = state.lock();
    let matching: Vec<serde_json::Value> = inner
        .images
        .iter()
        .filter(|((p, id), img)| {
            p == &project_id
                && get("marker").is_none_or(|m| id.as_str() > m)
                && get("__imagetype")
                    .is_none_or(|t| img.imagetype.as_deref().unwrap_or("private") == t)
                && get("visibility")
                    .is_none_or(|v| img.visibility.as_deref().unwrap_or("private") == v)
                && get("tag").is_none_or(|t| img.tags.iter().any(|have| have == t))
                && get("name").is_none_or(|n| img.name == n)
                && get("id").is_none_or(|i| id == i)
        })
        .take(limit + 1)
        .map(|((p, id), img)| {
            json!({
                "id": id,
                "name": img.name,
                "status": "active",
                "visibility": img.visibility.as_deref().unwrap_or("private"),
                "__imagetype": img.imagetype.as_deref().unwrap_or("private"),
                "owner": p,
                "__os_type": "Linux",
                "min_disk": 40,
                "tags": img.tags,
                "created_at": "2026-01-01T00:00:00Z",
                "updated_at": "2026-01-01T00:00:00Z",
            })
        })
        .collect();
    drop(inner);
    let more = matching.len() > limit;
    let page: Vec<serde_json::Value> = matching.into_iter().take(limit).collect();
    let mut body = json!({"images": page, "schema": "/v2/schemas/images", "first": format!("/v2/cloudimages?limit={limit}")});
    if more {
        if let Some(last) = page.last().and_then(|i| i["id"].as_str()) {
            body["next"] = json!(format!("/v2/cloudimages?limit={limit}&marker={last}"));
        }
    }
    json_response(StatusCode::OK, &rid, body.to_string())
}

/// `GET /v3/projects?name=`: IAM's project listing, filtered by name.
async fn list_projects(
    State(state): State<FakeState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let rid = request_id();
    state.lock().requests += 1;
    if let Err(resp) = authenticate(&state, &method, &uri, &headers, &rid) {
        return resp;
    }
    let query = parse_query(uri.query());
    let name = query_value(&query, "name");
    let projects: Vec<serde_json::Value> = state
        .lock()
        .projects
        .iter()
        .filter(|(_, n)| name.is_none_or(|want| want == n))
        .map(|(id, n)| json!({"id": id, "name": n, "domain_id": "d0000000000000000000000000000000", "enabled": true, "is_domain": false}))
        .collect();
    json_response(
        StatusCode::OK,
        &rid,
        json!({"projects": projects, "links": {"self": "/v3/projects"}}).to_string(),
    )
}
