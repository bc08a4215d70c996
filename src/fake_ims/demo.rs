//! The demo world: a fake IMS with a few golden images shared the way real ones are
//! (all member types and statuses, an organization with its URN, an image large
//! enough to need several pages), the Cloud Trace Service traces of its share
//! changes, images other tenants offer to the demo project (from a trusted owner and
//! from strangers), and the config that monitors it (and reads those traces).

use std::time::Duration;

use super::{member, member_trace, now_ms, FakeState};
use crate::ims::model::Member;

pub const REGION: &str = "cn-north-4";
pub const PROJECT_ID: &str = "1bed856811654c1cb661a6ca845ebc77";
pub const ACCESS_KEY: &str = "DEMOACCESSKEY0000000";

/// (image ID, name)
pub const IMAGES: [(&str, &str); 4] = [
    (
        "d164b5df-1bc3-4c3f-893e-3e471fd16e64",
        "golden-ubuntu-22.04",
    ),
    (
        "370befec-a369-475e-a224-44a45927a8fe",
        "golden-windows-2022",
    ),
    ("5b1f8e0a-6c1e-4a53-9d7e-2f0b8c1d9e21", "hardened-debian-12"),
    ("9c3d2e1f-0a4b-4c5d-8e6f-7a8b9c0d1e2f", "base-centos-7"),
];

/// The tenant whose images the demo project trusts (the platform team's account).
pub const DEMO_TRUSTED_OWNER: &str = "5e1f0c2d3b4a59687766554433221100";
/// A tenant nobody vouched for, whose offer waits for an answer.
pub const DEMO_UNTRUSTED_OWNER: &str = "9f8e7d6c5b4a39281706f5e4d3c2b1a0";
/// Another stranger, whose offer the project rejected.
pub const DEMO_REJECTED_OWNER: &str = "c0ffee00c0ffee00c0ffee00c0ffee00";

/// Images offered to the demo project: (image ID, name, owner, our member status).
pub const OFFERS: [(&str, &str, &str, &str); 4] = [
    (
        "2b7e1516-28ae-4d2a-abf7-158809cf4f3c",
        "platform-base-ubuntu-24.04",
        DEMO_TRUSTED_OWNER,
        "accepted",
    ),
    (
        "6bc1bee2-2e40-4f9f-96e9-3d7e117393a1",
        "platform-gpu-ubuntu-24.04",
        DEMO_TRUSTED_OWNER,
        "pending",
    ),
    (
        "ae2d8a57-1e03-4c2f-8c9e-b7d1a5f0e4b2",
        "partner-appliance-7.2",
        DEMO_UNTRUSTED_OWNER,
        "pending",
    ),
    (
        "f69f2445-df4f-4b9a-8c1e-2d3b4a5c6d7e",
        "vendor-trial-image",
        DEMO_REJECTED_OWNER,
        "rejected",
    ),
];

fn ts(days_ago: u64, seconds: u64) -> String {
    let t = time::OffsetDateTime::now_utc() - Duration::from_secs(days_ago * 86_400 + seconds);
    t.format(time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
    ))
    .unwrap_or_else(|_| "2026-01-01T00:00:00Z".into())
}

fn hex_id(seed: u64) -> String {
    format!(
        "{:016x}{:016x}",
        seed.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        seed.wrapping_mul(0xc2b2_ae3d_27d4_eb4f)
    )
}

/// The demo organization unit and its URN.
const ORG: &str = "ou-qdjrky7i07higfa4f6reqv9etybmp4ng";
const ORG_URN: &str = "organizations::6c031a41eefc480bb60f20c003891fcd:ou:o-z5142zmm6p5cumsxralfljeb3qrwqamd/ou-qdjrky7i07higfa4f6reqv9etybmp4ng";

/// One hand-made share: (image ID, member ID, member type, status, created and
/// updated that many days ago, URN).
type Fixture = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    u64,
    u64,
    Option<&'static str>,
);

/// The shares of the Ubuntu and Debian images: every member type and status.
const FIXTURES: [Fixture; 8] = [
    (
        IMAGES[0].0,
        "edc89b490d7d4392898e19b2deb34797",
        "project",
        "accepted",
        90,
        88,
        None,
    ),
    (
        IMAGES[0].0,
        "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
        "project",
        "pending",
        2,
        2,
        None,
    ),
    (
        IMAGES[0].0,
        "5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d",
        "domain",
        "accepted",
        40,
        39,
        None,
    ),
    (
        IMAGES[0].0,
        "a1b2c3d4e5f60718293a4b5c6d7e8f90",
        "domain",
        "rejected",
        30,
        12,
        None,
    ),
    (
        IMAGES[0].0,
        ORG,
        "organization",
        "accepted",
        60,
        60,
        Some(ORG_URN),
    ),
    (
        IMAGES[2].0,
        ORG,
        "organization",
        "pending",
        5,
        5,
        Some(ORG_URN),
    ),
    (
        IMAGES[2].0,
        "3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f",
        "project",
        "accepted",
        20,
        19,
        None,
    ),
    // A share nobody planned for: shows up as unexpected once allowlists exist.
    (
        IMAGES[2].0,
        "deadbeefdeadbeefdeadbeefdeadbeef",
        "domain",
        "accepted",
        1,
        1,
        None,
    ),
];

/// Fills `state` with the demo images, the large one with `large_image_members`
/// members, and the [`OFFERS`]; returns the secret key of the demo account.
pub fn populate(state: &FakeState, large_image_members: usize) -> String {
    let secret = format!("demo-{}", hex_id(rand::random::<u64>()));
    state.add_account(ACCESS_KEY, &secret, None);
    for (id, name) in IMAGES {
        state.add_image(PROJECT_ID, id, name);
    }
    put_fixtures(state);
    put_large_image_members(state, large_image_members);
    for (id, name, owner, status) in OFFERS {
        state.offer_image(PROJECT_ID, id, name, owner, status);
    }
    secret
}

/// Shares [`FIXTURES`], dated relative to now.
fn put_fixtures(state: &FakeState) {
    for (image, id, kind, status, created, updated, urn) in FIXTURES {
        state.put_member(
            PROJECT_ID,
            member(
                image,
                id,
                kind,
                status,
                &ts(created, 0),
                &ts(updated, 0),
                urn,
            ),
        );
    }
}

/// Shares the Windows image with `count` members, enough for several pages.
fn put_large_image_members(state: &FakeState, count: usize) {
    for i in 0..count as u64 {
        state.put_member(PROJECT_ID, large_image_member(i));
    }
}

/// The `i`th member of the Windows image: mostly projects, mostly accepted.
fn large_image_member(i: u64) -> Member {
    const STATUSES: [&str; 5] = ["accepted", "accepted", "accepted", "pending", "rejected"];
    // Seeds of the two kinds never meet, whatever the size: every member is distinct.
    let (kind, id) = if i.is_multiple_of(10) {
        ("domain", hex_id((1 << 40) + i))
    } else {
        ("project", hex_id(i + 10_000))
    };
    let status = STATUSES[((i / 3 + i) % STATUSES.len() as u64) as usize];
    member(
        IMAGES[1].0,
        &id,
        kind,
        status,
        &ts(i % 365, i),
        &ts(i % 30, i),
        None,
    )
}

/// Who shares and withdraws the demo's coming-and-going share, as its traces say.
pub const CHURN_ACTOR: &str = "release-bot";
pub const CHURN_SOURCE_IP: &str = "192.0.2.10";
/// How long after a change CTS lists its trace, in the demo.
const RECORDING_LAG_MS: i64 = 1_000;

/// Records the trace of a share change the demo's release bot made just now.
fn record_change(state: &FakeState, trace_name: &str, image: &str, member_id: &str) {
    let now = now_ms();
    state.add_trace(
        PROJECT_ID,
        member_trace(
            trace_name,
            image,
            member_id,
            CHURN_ACTOR,
            CHURN_SOURCE_IP,
            now,
            now + RECORDING_LAG_MS,
        ),
    );
}

/// Keeps the demo alive: every `every`, one step of a share's life on the Ubuntu image
/// (shared, accepted, withdrawn), so that the change audit and the "recently added"
/// panels have something to show. Sharing and withdrawing also leave their CTS trace
/// (`addMember`, `deleteMember`); the acceptance does not, as the recipient's own
/// call it is traced in the recipient's project. Runs until the task is dropped.
pub async fn churn(state: FakeState, every: Duration) {
    let (image, id) = (IMAGES[0].0, "7e57ab1e7e57ab1e7e57ab1e7e57ab1e");
    // A quarter of the period off the exporter's polls (every two polls), so that the
    // trace, read within seconds, finds each change before the next scheduled poll
    // does: the demo's changes say who made them.
    let first = tokio::time::Instant::now() + every + every / 4;
    let mut ticker = tokio::time::interval_at(first, every);
    for step in 0u64.. {
        ticker.tick().await;
        match step % 3 {
            0 => {
                state.put_member(
                    PROJECT_ID,
                    member(image, id, "project", "pending", &ts(0, 0), &ts(0, 0), None),
                );
                record_change(&state, "addMember", image, id);
            }
            1 => state.put_member(
                PROJECT_ID,
                member(
                    image,
                    id,
                    "project",
                    "accepted",
                    &ts(0, 60),
                    &ts(0, 0),
                    None,
                ),
            ),
            _ => {
                if state.remove_member(PROJECT_ID, image, id) {
                    record_change(&state, "deleteMember", image, id);
                }
            }
        }
    }
}

/// The demo's configuration, written as a user would write it: two images configured
/// with their expected recipients and a watched member, the rest found by discovery,
/// and an allowlist that the one stray share does not match; share changes are also
/// read from the fake's trace list (`events.cts`, the target's `cts_endpoint`), and
/// the images offered to the project are listed as often as the shares are polled,
/// trusting [`DEMO_TRUSTED_OWNER`] only.
pub fn config_yaml(endpoint: &str, secret: &str, poll_interval: Duration) -> String {
    let (ubuntu, windows, debian) = (IMAGES[0].0, IMAGES[1].0, IMAGES[2].0);
    format!(
        r#"poll_interval: {poll}
page_size: 500
discovery_interval: 1m
# Share changes show up between polls through the Cloud Trace Service's trace list.
events:
  cts:
    interval: 2s
    lookback: 5m
# Images other tenants share with the project: only the platform team's are trusted.
incoming:
  interval: {poll}
  trusted_owners: [{DEMO_TRUSTED_OWNER}]
credentials:
  access_key_id: {ACCESS_KEY}
  secret_access_key: {secret}
# Every organization unit of our own organization may receive any image.
allowed_members:
  - "urn:organizations::6c031a41eefc480bb60f20c003891fcd:ou:*"
targets:
  - region: {REGION}
    project_id: {PROJECT_ID}
    endpoint: {endpoint}
    cts_endpoint: {endpoint}
    allowed_members:
      - edc89b490d7d4392898e19b2deb34797
      - 3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f
    discover:
      imagetype: private
    images:
      - id: {ubuntu}
        expected_members: [0f1e2d3c4b5a69788796a5b4c3d2e1f0, 5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d, a1b2c3d4e5f60718293a4b5c6d7e8f90]
        watch_members: [edc89b490d7d4392898e19b2deb34797]
      - id: {windows}
        expected_members: ["*"]
      - id: {debian}
        watch_members: [3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f]
"#,
        poll = humantime::format_duration(poll_interval),
    )
}
