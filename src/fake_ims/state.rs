//! What the fake knows: accounts, IAM projects, images with their members, the
//! Cloud Trace Service traces, the images other tenants offer to a project
//! ([`offers`]), the faults to inject, the request counters and the added latency;
//! plus [`member`] and [`member_trace`], the fixture builders.
//!
//! Plain data behind one lock, shared by the tests and the server; how a fault
//! evolves from one request to the next (scripts advance, flaky faults count down)
//! is decided here, under that lock. It must not know HTTP: no requests, responses,
//! status codes or signatures (that is the gateway's and the handlers' business).
//! The server reads images, projects, traces and offers through [`FakeState::lock`];
//! everything else goes through methods.

mod offers;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::auth::credentials::Secret;
use crate::ims::model::Member;

pub use offers::SharedQuery;
pub(super) use offers::{shared_fault_key, Offer};

/// A fault to inject into the answers for one image, a project's image listing
/// ([`FakeState::set_fault`]), a project's trace list ([`FakeState::set_cts_fault`])
/// or its listing of offered images ([`FakeState::set_shared_fault`]).
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
    /// Answer the `n`th page (0-based) of a member list (trace list, listing of
    /// offered images) with a 500; other pages are fine.
    FailPage(usize),
    /// Answer the next `failures` requests with `status` (429 as the gateway's
    /// throttling error), with `Retry-After: retry_after` seconds if set; then
    /// answer normally and clear the fault.
    Flaky {
        failures: u32,
        status: u16,
        retry_after: Option<u64>,
    },
    /// Answer 200 with a valid, empty list (of members, traces or offered images)
    /// padded to at least this many bytes.
    Oversized(usize),
    /// Answer with these canned responses in order, after checking the signature;
    /// the last one repeats. For answers no honest server gives.
    Script(Vec<Canned>),
    /// Ignore `limit`: every page has this many new members (or traces, or offered
    /// images) and a next marker, for ever (a server that would make the exporter
    /// hold millions of members).
    Flood(usize),
    /// Answer 200 with `{}`: valid JSON without the list the route carries
    /// (`members`, `images`, `traces`), as a half-broken backend might.
    MissingList,
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
pub(super) struct FakeImage {
    pub(super) name: String,
    /// Attributes discovery filters on; `None` reads as `private`.
    pub(super) imagetype: Option<String>,
    pub(super) visibility: Option<String>,
    /// `key.value` strings, as the `tag` filter takes them.
    pub(super) tags: Vec<String>,
    pub(super) members: BTreeMap<String, Member>,
}

#[derive(Debug, Default)]
pub(super) struct Inner {
    /// AK → the key pair (SK, required security token, expiry).
    accounts: HashMap<String, Account>,
    /// IAM projects: (ID, name).
    pub(super) projects: Vec<(String, String)>,
    /// (project_id, image_id) → image.
    pub(super) images: BTreeMap<(String, String), FakeImage>,
    faults: HashMap<String, Fault>,
    requests: u64,
    /// When each request arrived, for rate checks.
    request_times: Vec<tokio::time::Instant>,
    rejected_signatures: u64,
    /// Added to every answer about members, images and traces (see [`FakeState::set_latency`]).
    latency: Duration,
    /// project_id → its Cloud Trace Service traces, in the order added.
    pub(super) traces: HashMap<String, Vec<serde_json::Value>>,
    cts_requests: u64,
    cts_queries: Vec<CtsQuery>,
    /// Images offered to each project by other tenants.
    pub(super) offers: offers::Offers,
    pub(super) shared_requests: u64,
    pub(super) shared_queries: Vec<SharedQuery>,
}

/// The paging and window parameters of one trace-list request, as sent (a value
/// that is not a number reads as `None`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CtsQuery {
    /// `from`, Unix milliseconds.
    pub from: Option<i64>,
    /// `to`, Unix milliseconds.
    pub to: Option<i64>,
    /// `next`: the marker of the previous page.
    pub next: Option<String>,
    pub limit: Option<u32>,
}

/// A key pair the fake accepts; temporary ones carry a token and expire.
#[derive(Debug, Clone)]
pub(super) struct Account {
    pub(super) sk: Secret,
    pub(super) token: Option<String>,
    pub(super) expires: Option<std::time::SystemTime>,
}

/// Shared, mutable state of the fake; tests change it while the exporter polls.
#[derive(Debug, Default, Clone)]
pub struct FakeState(Arc<Mutex<Inner>>);

impl FakeState {
    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
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

    /// When each IMS request so far arrived (as counted by [`FakeState::requests`]).
    pub fn request_times(&self) -> Vec<tokio::time::Instant> {
        self.lock().request_times.clone()
    }

    /// IMS and IAM requests answered so far (any outcome). Trace-list requests are
    /// not among them: they are counted by [`FakeState::cts_requests`], so that tests
    /// counting the exporter's IMS calls are not disturbed by its trace reads.
    /// Listings of offered images are (also counted by
    /// [`FakeState::shared_list_requests`]): only an exporter configured with
    /// `incoming:` makes them.
    pub fn requests(&self) -> u64 {
        self.lock().requests
    }

    /// Stores a Cloud Trace Service trace of `project_id`, listed by
    /// `GET /v3/{project_id}/traces` once its `record_time` (Unix ms) has come, as CTS
    /// records a trace some time after the operation. See [`member_trace`].
    pub fn add_trace(&self, project_id: &str, trace: serde_json::Value) {
        self.lock()
            .traces
            .entry(project_id.into())
            .or_default()
            .push(trace);
    }

    /// Injects `fault` into every trace-list answer for `project_id` (`Fault::FailPage`
    /// counts trace pages, `Fault::Flood` floods traces); `None` clears it.
    pub fn set_cts_fault(&self, project_id: &str, fault: Option<Fault>) {
        self.set_fault(&cts_fault_key(project_id), fault);
    }

    /// Trace-list requests answered so far (any status, signed or not).
    pub fn cts_requests(&self) -> u64 {
        self.lock().cts_requests
    }

    /// The query of every trace-list request so far, in arrival order: the windows
    /// and markers a client asked for.
    pub fn cts_queries(&self) -> Vec<CtsQuery> {
        self.lock().cts_queries.clone()
    }

    /// Requests refused for a bad or missing signature.
    pub fn rejected_signatures(&self) -> u64 {
        self.lock().rejected_signatures
    }

    /// Delays every answer about members, images and traces (list, detail, image
    /// listing, trace list) by
    /// `latency` before it is sent, like a distant API; zero (the default) for none.
    pub fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }

    /// Counts a request that goes through the prologue, with its arrival time.
    pub(super) fn record_request(&self) {
        let mut inner = self.lock();
        inner.requests += 1;
        inner.request_times.push(tokio::time::Instant::now());
    }

    /// Counts a trace-list request and keeps its query.
    pub(super) fn record_cts_request(&self, query: CtsQuery) {
        let mut inner = self.lock();
        inner.cts_requests += 1;
        inner.cts_queries.push(query);
    }

    /// Counts a request answered outside the prologue (no arrival time kept).
    pub(super) fn count_request(&self) {
        self.lock().requests += 1;
    }

    pub(super) fn count_rejected_signature(&self) {
        self.lock().rejected_signatures += 1;
    }

    pub(super) fn latency(&self) -> Duration {
        self.lock().latency
    }

    pub(super) fn account(&self, access_key: &str) -> Option<Account> {
        self.lock().accounts.get(access_key).cloned()
    }

    /// The fault to apply to this request about `key` (an image ID, or a project ID
    /// for image listings), moving it on for the next one.
    pub(super) fn next_fault(&self, key: &str) -> Option<Fault> {
        let mut inner = self.lock();
        let fault = inner.faults.get(key).cloned();
        // A script moves on to its next answer (the last one stays).
        if let Some(Fault::Script(answers)) = &fault {
            if answers.len() > 1 {
                let rest = answers[1..].to_vec();
                inner.faults.insert(key.into(), Fault::Script(rest));
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
                inner.faults.remove(key);
            } else {
                inner.faults.insert(
                    key.into(),
                    Fault::Flaky {
                        failures: failures - 1,
                        status,
                        retry_after,
                    },
                );
            }
        }
        fault
    }
}

/// The key of a project's trace-list faults among the image faults: image IDs never
/// contain `:`, so the two cannot meet.
pub(super) fn cts_fault_key(project_id: &str) -> String {
    format!("cts:{project_id}")
}

/// Now as Unix milliseconds, the unit of trace times.
pub fn now_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    // i64 milliseconds last until the year 292 million: the cast cannot truncate.
    (now.unix_timestamp_nanos() / 1_000_000) as i64
}

/// The account that owns the fake's projects, as traces name it.
const TRACE_DOMAIN: (&str, &str) = ("6c031a41eefc480bb60f20c003891fcd", "ims-owner");

/// A random UUID (version 4), as CTS writes trace IDs.
fn uuid_v4() -> String {
    let mut b = rand::random::<u128>().to_be_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// A stable 32-hex-digit user ID for `actor`, so one actor is always the same user.
fn user_id(actor: &str) -> String {
    let seed = actor.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!(
        "{:016x}{:016x}",
        super::synthetic::splitmix(seed),
        super::synthetic::splitmix(seed ^ 1)
    )
}

/// An IMS member trace as CTS lists it (the SDK model `Traces`), for building
/// fixtures: `trace_name` is `addMember`, `updateMember` or `deleteMember`; `request`
/// is the v2 member call's body as a string, `time` the operation and `record_time`
/// when CTS recorded it (Unix ms; later than `time`). The trace ID is a fresh UUID.
pub fn member_trace(
    trace_name: &str,
    image_id: &str,
    member_id: &str,
    actor: &str,
    source_ip: &str,
    time_ms: i64,
    record_time_ms: i64,
) -> serde_json::Value {
    let request = serde_json::json!({ "member": member_id }).to_string();
    // A deletion answers with no body; the others with the member.
    let response = if trace_name == "deleteMember" {
        String::new()
    } else {
        serde_json::json!({
            "image_id": image_id,
            "member_id": member_id,
            "status": "pending",
            "schema": "/v2/schemas/member",
        })
        .to_string()
    };
    serde_json::json!({
        "trace_id": uuid_v4(),
        "trace_name": trace_name,
        "trace_rating": "normal",
        "trace_type": "ApiCall",
        "service_type": "IMS",
        "resource_type": "image",
        "resource_id": image_id,
        "resource_name": image_id,
        "request": request,
        "response": response,
        "code": "200",
        "api_version": "v2",
        "time": time_ms,
        "record_time": record_time_ms,
        "user": {
            "id": user_id(actor),
            "name": actor,
            "domain": {"id": TRACE_DOMAIN.0, "name": TRACE_DOMAIN.1},
        },
        "source_ip": source_ip,
        "request_id": format!("{:032x}", rand::random::<u128>()),
        "location_info": "",
    })
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
