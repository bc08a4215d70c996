//! The Cloud Trace Service trace list, `GET /v3/{project_id}/traces`, served beside
//! the IMS routes: its query (`trace_type`, `from`/`to`, `limit`, `next`, exact
//! filters), what is listable (recorded by now, inside the window), the order
//! (newest `time` first, ties by `trace_id`) and the pages (`meta_data.marker` is the
//! page's last `trace_id` while more remain).
//!
//! Like the IMS handlers it starts with the gateway's prologue ([`cts_prologue`]) and
//! must not check signatures or write error bodies itself: it picks the message,
//! [`cts_error`] formats it.

// Handlers return a ready `Response` as their error: it is what gets sent.
#![allow(clippy::result_large_err)]

use std::cmp::Reverse;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{json, Value};

use super::gateway::{
    cts_error, cts_prologue, json_response, parse_query, query_value, request_id,
};
use super::state::{now_ms, CtsQuery, FakeState, Fault};

/// CTS's page size without `limit`, and its largest.
const DEFAULT_LIMIT: usize = 10;
const MAX_LIMIT: usize = 200;
/// The window without `from`/`to`: the last hour.
const DEFAULT_WINDOW_MS: i64 = 3_600_000;
/// The query parameters that filter on the trace field of the same name, exactly.
const EXACT_FILTERS: [&str; 7] = [
    "service_type",
    "trace_name",
    "trace_id",
    "trace_rating",
    "resource_type",
    "resource_id",
    "resource_name",
];
/// The marker prefix of [`Fault::Flood`]'s endless pages.
const FLOOD_MARKER: &str = "flood-";

/// A trace list request's query, checked.
struct TraceQuery {
    from: i64,
    to: i64,
    limit: usize,
    next: Option<String>,
    /// (trace field, wanted value)
    filters: Vec<(&'static str, String)>,
    /// `user`: the name of who made the call.
    user: Option<String>,
}

/// What [`FakeState::cts_queries`] keeps of a request, before any check.
fn recorded(query: &[(String, String)]) -> CtsQuery {
    let get = |k: &str| query_value(query, k);
    CtsQuery {
        from: get("from").and_then(|v| v.parse().ok()),
        to: get("to").and_then(|v| v.parse().ok()),
        next: get("next").map(str::to_string),
        limit: get("limit").and_then(|v| v.parse().ok()),
    }
}

/// Checks the query as CTS does; `Err` is the 400's message.
fn parse(query: &[(String, String)], now: i64) -> Result<TraceQuery, String> {
    let get = |k: &str| query_value(query, k);
    match get("trace_type") {
        Some("system") => {}
        Some(other) => return Err(format!("trace_type {other:?} is not supported (system)")),
        None => return Err("trace_type is required".into()),
    }
    let limit = match get("limit").map(str::parse::<usize>) {
        None => DEFAULT_LIMIT,
        Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(_) => return Err(format!("limit must be between 1 and {MAX_LIMIT}")),
    };
    let millis = |k: &str| -> Result<Option<i64>, String> {
        get(k)
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| format!("{k} must be Unix milliseconds"))
            })
            .transpose()
    };
    let (from, to) = match (millis("from")?, millis("to")?) {
        (Some(from), Some(to)) if from <= to => (from, to),
        (Some(_), Some(_)) => return Err("from is later than to".into()),
        (None, None) => (now - DEFAULT_WINDOW_MS, now),
        _ => return Err("from and to must be given together".into()),
    };
    let filters = EXACT_FILTERS
        .iter()
        .filter_map(|&k| get(k).map(|v| (k, v.to_string())))
        .collect();
    Ok(TraceQuery {
        from,
        to,
        limit,
        next: get("next").filter(|m| !m.is_empty()).map(str::to_string),
        filters,
        user: get("user").map(str::to_string),
    })
}

fn time_of(t: &Value) -> Option<i64> {
    t.get("time").and_then(Value::as_i64)
}

fn trace_id(t: &Value) -> &str {
    t.get("trace_id").and_then(Value::as_str).unwrap_or("")
}

/// The list order: newest operation first, ties by trace ID.
fn sort_key(t: &Value) -> (Reverse<i64>, &str) {
    (Reverse(time_of(t).unwrap_or(i64::MIN)), trace_id(t))
}

/// Recorded by `now`: a trace without `record_time` counts as recorded at its `time`.
fn recorded_by(t: &Value, now: i64) -> bool {
    t.get("record_time")
        .and_then(Value::as_i64)
        .or_else(|| time_of(t))
        .is_some_and(|r| r <= now)
}

impl TraceQuery {
    /// In the window and through every filter.
    fn matches(&self, t: &Value) -> bool {
        time_of(t).is_some_and(|time| (self.from..=self.to).contains(&time))
            && self
                .filters
                .iter()
                .all(|(field, want)| t.get(*field).and_then(Value::as_str) == Some(want))
            && self.user.as_deref().is_none_or(|want| {
                t.get("user")
                    .and_then(|u| u.get("name"))
                    .and_then(Value::as_str)
                    == Some(want)
            })
    }
}

pub(super) async fn list_traces(
    State(state): State<FakeState>,
    Path(project_id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let rid = request_id();
    let query = parse_query(uri.query());
    let prologue = cts_prologue(
        &state,
        &method,
        &uri,
        &headers,
        &project_id,
        recorded(&query),
        &rid,
    );
    let fault = match prologue.await {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let now = now_ms();
    let q = match parse(&query, now) {
        Ok(q) => q,
        Err(message) => return bad_request(&rid, &message),
    };
    if let Some(Fault::Flood(per_page)) = fault {
        return flood_page(per_page, q.next.as_deref(), now, &rid);
    }
    let inner = state.lock();
    let all: &[Value] = inner.traces.get(&project_id).map_or(&[], Vec::as_slice);
    page_of(all, &q, now, fault, &rid)
}

/// The page `q` asks for of `all` (the project's traces) at `now`.
fn page_of(all: &[Value], q: &TraceQuery, now: i64, fault: Option<Fault>, rid: &str) -> Response {
    // The marker is looked up among all the project's traces: a page boundary stays
    // valid whatever was recorded since.
    let after = match &q.next {
        None => None,
        Some(m) => match all.iter().find(|t| trace_id(t) == m) {
            Some(t) => Some(sort_key(t)),
            None => return bad_request(rid, &format!("next {m:?} is not a known marker")),
        },
    };
    let mut listed: Vec<&Value> = all
        .iter()
        .filter(|t| recorded_by(t, now) && q.matches(t))
        .collect();
    listed.sort_by(|a, b| sort_key(a).cmp(&sort_key(b)));
    let skipped = after.map_or(0, |key| listed.partition_point(|t| sort_key(t) <= key));
    if fault == Some(Fault::FailPage(skipped.div_ceil(q.limit))) {
        return cts_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            rid,
            "CTS.0001",
            "injected page fault",
        );
    }
    let rest = &listed[skipped..];
    let more = rest.len() > q.limit;
    let page: Vec<Value> = rest.iter().take(q.limit).map(|t| (*t).clone()).collect();
    let marker = more.then(|| page.last().map(trace_id).unwrap_or(""));
    let body = json!({
        "traces": page,
        "meta_data": {"count": page.len(), "marker": marker},
    });
    json_response(StatusCode::OK, rid, body.to_string())
}

/// CTS's answer to a query it does not take.
fn bad_request(rid: &str, message: &str) -> Response {
    cts_error(StatusCode::BAD_REQUEST, rid, "CTS.0001", message)
}

/// A page of [`Fault::Flood`]: `per_page` new IMS traces after the marker, and a next
/// marker, whatever `limit` and the window say.
fn flood_page(per_page: usize, next: Option<&str>, now: i64, rid: &str) -> Response {
    let start: usize = next
        .and_then(|m| m.strip_prefix(FLOOD_MARKER))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let traces: Vec<Value> = (start..start.saturating_add(per_page))
        .map(|i| {
            json!({
                "trace_id": format!("{FLOOD_MARKER}{}", i + 1),
                "trace_name": "addMember",
                "service_type": "IMS",
                "resource_type": "image",
                "time": now,
                "record_time": now,
            })
        })
        .collect();
    let marker = format!("{FLOOD_MARKER}{}", start.saturating_add(per_page));
    let body = json!({
        "traces": traces,
        "meta_data": {"count": traces.len(), "marker": marker},
    });
    json_response(StatusCode::OK, rid, body.to_string())
}

#[cfg(test)]
mod tests {
    //! The exporter's own CTS client ([`crate::ims::traces`]) against this route: what
    //! the fake serves is what the exporter reads.

    use std::sync::Arc;
    use std::time::Duration;

    use super::super::{member_trace, now_ms, FakeIms, FakeState, Fault};
    use crate::auth::credentials::{Credentials, Secret};
    use crate::auth::provider::CredentialProvider;
    use crate::auth::source::CredentialSource;
    use crate::ids::ProjectId;
    use crate::ims::client::{ApiTarget, ClientOptions};
    use crate::ims::observer::RequestObserver;
    use crate::ims::retry::RetryPolicy;
    use crate::ims::{ApiError, ImsClient};

    const PROJECT: &str = "1bed856811654c1cb661a6ca845ebc77";
    const IMAGE: &str = "d164b5df-1bc3-4c3f-893e-3e471fd16e64";

    struct Unobserved;
    impl RequestObserver for Unobserved {
        fn request(&self, _: &'static str, _: &str, _: Duration) {}
        fn retry(&self, _: &'static str) {}
    }

    fn client_and_target(fake: &FakeIms) -> (ImsClient, ApiTarget) {
        crate::tls::ensure_crypto_provider();
        let options = ClientOptions {
            request_timeout: Duration::from_secs(10),
            max_concurrent_requests: 4,
            retry: RetryPolicy {
                max_attempts: 1,
                ..RetryPolicy::default()
            },
            max_response_bytes: 16 << 20,
            ca_file: None,
            insecure_skip_verify: false,
        };
        let client = ImsClient::new(&options, Arc::new(Unobserved)).unwrap();
        let credentials = CredentialProvider::new(&CredentialSource::Environment(Credentials {
            access_key_id: "AKTESTEXAMPLE000".into(),
            secret_access_key: Secret::new("SKTEST"),
            security_token: None,
        }))
        .unwrap();
        let target = ApiTarget {
            endpoint: fake.endpoint().parse().unwrap(),
            project_id: ProjectId::parse(PROJECT).unwrap(),
            credentials: Arc::new(credentials),
            rate_limit: None,
            concurrency: Arc::new(tokio::sync::Semaphore::new(4)),
        };
        (client, target)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_exporters_cts_client_reads_every_page() {
        let state = FakeState::default();
        state.add_account("AKTESTEXAMPLE000", "SKTEST", None);
        let now = now_ms();
        for i in 0..450_i64 {
            let t = now - 60_000 - i * 100;
            let member = format!("{i:032x}");
            let trace = member_trace("addMember", IMAGE, &member, "alice", "192.0.2.1", t, t + 10);
            state.add_trace(PROJECT, trace);
        }
        let fake = FakeIms::start(state).await.unwrap();
        let (client, target) = client_and_target(&fake);
        let endpoint = fake.endpoint().parse().unwrap();

        let traces = client
            .list_traces(&target, &endpoint, now - 3_600_000, now)
            .await
            .unwrap();
        assert_eq!(traces.len(), 450);
        assert!(traces.windows(2).all(|w| w[0].time >= w[1].time));
        let first = &traces[0];
        assert_eq!(first.trace_name.as_deref(), Some("addMember"));
        assert_eq!(first.resource_id.as_deref(), Some(IMAGE));
        assert_eq!(first.actor(), Some("alice"));
        let queries = fake.state.cts_queries();
        assert_eq!(queries.len(), 3, "{queries:?}");
        assert!(queries
            .iter()
            .all(|q| q.from == Some(now - 3_600_000) && q.to == Some(now)));
        assert_eq!(fake.state.requests(), 0);

        fake.state.set_cts_fault(PROJECT, Some(Fault::Status(500)));
        let err = client
            .list_traces(&target, &endpoint, now - 3_600_000, now)
            .await
            .unwrap_err();
        assert!(matches!(&err, ApiError::Http { status: 500, .. }), "{err}");
        fake.state.set_cts_fault(PROJECT, Some(Fault::MissingList));
        let err = client
            .list_traces(&target, &endpoint, now - 3_600_000, now)
            .await
            .unwrap_err();
        assert!(matches!(&err, ApiError::Decode { .. }), "{err}");
        fake.stop().await;
    }
}
