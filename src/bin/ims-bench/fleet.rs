//! The simulated fleet in the fake IMS: deterministic image and member IDs, a
//! scenario's population, churn, and the exporter config that targets the fleet.

use std::collections::VecDeque;

use ims_exporter::fake_ims::synthetic::{splitmix, ORG_URN_PREFIX};
use ims_exporter::fake_ims::{member, FakeState};
use ims_exporter::ims::model::Member;

use crate::args::{Args, Scenario, PAGE_SIZE};

pub(crate) const PROJECT: &str = "1bed856811654c1cb661a6ca845ebc77";
/// The owner of half the offered images (`--incoming`), trusted by the config.
pub(crate) const TRUSTED_OWNER: &str = "7a0e0000000000000000000000000001";
const REGION: &str = "cn-north-4";
const AK: &str = "BENCHACCESSKEY000000";
const SK: &str = "bench-secret-key-00000000000000000000000";

pub(crate) fn image_id(i: usize) -> String {
    let h = splitmix(i as u64 ^ 0x1a2b_3c4d);
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xfff,
        0x8000 | (splitmix(h) & 0x3fff),
        i
    )
}

fn unix_to_rfc3339(secs: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
            ))
            .ok()
        })
        .unwrap_or_else(|| "2025-01-01T00:00:00Z".into())
}

/// The member ID of recipient `n`: a project or account ID (32 hex characters) or an
/// organization unit (`ou-` and 32 base-36 characters), with its type.
fn recipient_id(n: u64) -> (String, &'static str) {
    let h = splitmix(n);
    match n % 20 {
        0 => {
            let digits: String = (0..32u64)
                .map(|k| {
                    let d = (splitmix(h ^ k) % 36) as u32;
                    char::from_digit(d, 36).unwrap_or('0')
                })
                .collect();
            (format!("ou-{digits}"), "organization")
        }
        1..=3 => (format!("{:016x}{:016x}", h, splitmix(h)), "domain"),
        _ => (format!("{:016x}{:016x}", h, splitmix(h)), "project"),
    }
}

/// Recipient `n` as a member of `image`: 80 % project, 15 % account, 5 % organization;
/// 80 % accepted, 15 % pending, 5 % rejected; shared some time in 2024–2025.
fn recipient(image: &str, n: u64) -> Member {
    let (id, kind) = recipient_id(n);
    let h = splitmix(n ^ 0x5eed);
    let status = match h % 20 {
        0 => "rejected",
        1..=3 => "pending",
        _ => "accepted",
    };
    let created = 1_704_067_200 + h % 63_072_000;
    let updated = created + (h >> 32) % 2_592_000;
    let urn = (kind == "organization").then(|| format!("{ORG_URN_PREFIX}{id}"));
    member(
        image,
        &id,
        kind,
        status,
        &unix_to_rfc3339(created),
        &unix_to_rfc3339(updated),
        urn.as_deref(),
    )
}

/// The allowlist of the benchmark's config: the organization's units by URN and every
/// member ID not starting with `f`, so about 6 % of the project and account members
/// are unexpected (16 entries to match per member, as a real allowlist has a few).
fn allowlist() -> Vec<String> {
    let mut entries = vec![format!("urn:{ORG_URN_PREFIX}*")];
    entries.extend("0123456789abcde".chars().map(|c| format!("{c}*")));
    entries
}

/// The fake and what it holds, for churn.
pub(crate) struct Fleet {
    pub(crate) state: FakeState,
    images: Vec<String>,
    /// Recipients of each image, oldest first.
    shares: Vec<VecDeque<u64>>,
    next_recipient: u64,
}

impl Fleet {
    pub(crate) fn populate(state: FakeState, s: &Scenario) -> Fleet {
        state.add_account(AK, SK, None);
        // Recipients come from a pool, so images share many of them, as in a real fleet.
        let pool = (2 * s.members as u64).max(2000);
        let mut images = Vec::with_capacity(s.images);
        let mut shares = Vec::with_capacity(s.images);
        for i in 0..s.images {
            let id = image_id(i);
            state.add_image(PROJECT, &id, &format!("bench-image-{i:05}"));
            let mut mine = VecDeque::with_capacity(s.members);
            for j in 0..s.members as u64 {
                let n = (i as u64 * 37 + j) % pool;
                state.put_member(PROJECT, recipient(&id, n));
                mine.push_back(n);
            }
            images.push(id);
            shares.push(mine);
        }
        Fleet {
            state,
            images,
            shares,
            next_recipient: pool,
        }
    }

    /// Replaces `percent` % of every image's members (the oldest) with new recipients.
    /// Returns (removed, added).
    pub(crate) fn churn(&mut self, percent: u64) -> (u64, u64) {
        let (mut removed, mut added) = (0, 0);
        for (image, mine) in self.images.iter().zip(&mut self.shares) {
            let k = (mine.len() as u64 * percent).div_ceil(100);
            for _ in 0..k {
                if let Some(n) = mine.pop_front() {
                    if self.state.remove_member(PROJECT, image, &recipient_id(n).0) {
                        removed += 1;
                    }
                }
                let n = self.next_recipient;
                self.next_recipient += 1;
                self.state.put_member(PROJECT, recipient(image, n));
                mine.push_back(n);
                added += 1;
            }
        }
        (removed, added)
    }
}

/// An official-SDK peer's command line (`--peer`): `script` (checked to exist by the
/// caller) on the same fake, with the credentials, concurrency and page size of the
/// exporter's config, the images in `images_file`.
pub(crate) fn peer_command(
    args: &Args,
    script: &std::path::Path,
    endpoint: &str,
    fleet: &Fleet,
    images_file: &std::path::Path,
) -> Result<std::process::Command, String> {
    let list: String = fleet.images.iter().map(|id| format!("{id}\n")).collect();
    std::fs::write(images_file, list)
        .map_err(|e| format!("cannot write {}: {e}", images_file.display()))?;
    let mut cmd = std::process::Command::new(&args.python);
    cmd.arg(script)
        .args(["--endpoint", endpoint, "--ak", AK, "--sk", SK])
        .args(["--project-id", PROJECT, "--images-file"])
        .arg(images_file)
        .args(["--listen", "127.0.0.1:0", "--interval", "1"])
        .args(["--concurrency", &args.concurrency.to_string()])
        .args(["--page-size", &PAGE_SIZE.to_string()]);
    Ok(cmd)
}

pub(crate) fn config_yaml(args: &Args, endpoint: &str, fleet: &Fleet) -> String {
    let mut y = String::new();
    y.push_str("# Written by ims-bench.\nrequest_timeout: 30s\n");
    match (args.cts_interval, args.incoming) {
        // Events: polls reconcile hourly, traces are read every `interval`.
        (Some(every), _) => y.push_str(&format!(
            "poll_interval: 1h\nevents:\n  cts:\n    interval: {}\n    lookback: 5m\n",
            humantime::format_duration(every)
        )),
        // Offers: listed back to back, polls out of the way.
        (None, Some(_)) => y.push_str(&format!(
            "poll_interval: 1h\nincoming:\n  interval: 1s\n  trusted_owners: [\"{TRUSTED_OWNER}\"]\nmax_incoming_images: 1000000\n"
        )),
        (None, None) => y.push_str("poll_interval: 1s\n"),
    }
    y.push_str(&format!(
        "page_size: {PAGE_SIZE}\nmax_concurrent_requests: {}\n",
        args.concurrency
    ));
    if !args.member_metrics {
        y.push_str("member_metrics: false\n");
    }
    y.push_str(&format!(
        "credentials:\n  access_key_id: {AK}\n  secret_access_key: {SK}\n"
    ));
    y.push_str("allowed_members:\n");
    for e in allowlist() {
        y.push_str(&format!("  - \"{e}\"\n"));
    }
    y.push_str(&format!(
        "targets:\n  - region: {REGION}\n    project_id: {PROJECT}\n    endpoint: {endpoint}\n    cts_endpoint: {endpoint}\n    images:\n"
    ));
    for (i, id) in fleet.images.iter().enumerate() {
        y.push_str(&format!(
            "      - id: {id}\n        name: bench-image-{i:05}\n"
        ));
    }
    y
}
