//! What the fake knows: accounts, IAM projects, images with their members, the
//! faults to inject, the request counters and the added latency; plus [`member`],
//! the fixture builder.
//!
//! Plain data behind one lock, shared by the tests and the server; how a fault
//! evolves from one request to the next (scripts advance, flaky faults count down)
//! is decided here, under that lock. It must not know HTTP: no requests, responses,
//! status codes or signatures (that is the gateway's and the handlers' business).
//! The server reads images and projects through [`FakeState::lock`]; everything
//! else goes through methods.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::auth::credentials::Secret;
use crate::ims::model::Member;

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
    /// Added to every answer about members and images (see [`FakeState::set_latency`]).
    latency: Duration,
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

    /// Counts a request that goes through the prologue, with its arrival time.
    pub(super) fn record_request(&self) {
        let mut inner = self.lock();
        inner.requests += 1;
        inner.request_times.push(tokio::time::Instant::now());
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
