//! The fake IMS speaks the real API: the official Huawei Cloud Python SDK
//! (`huaweicloudsdkcore` + `huaweicloudsdkims`), acting as an ordinary client, signs
//! its requests, pages the member list by `page_info.next_marker` and decodes the
//! fake's answers with its own models — and gets exactly what the fake holds. The
//! same for the fake's Cloud Trace Service trace list with `huaweicloudsdkcts`, paged
//! by `meta_data.marker`, and for its listing of the images other tenants offer to a
//! project (`ListImagesRequest(imagetype="shared", member_status=...)`), paged by the
//! last image ID.
//!
//! Needs `python3` with the SDKs installed (`pip install huaweicloudsdkims
//! huaweicloudsdkcts`). Without them the tests print SKIPPED, except under `CI=true`,
//! where they fail.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::support::{describe, run_tool, start_fake, AK, PROJECT, SK};
use ims_exporter::fake_ims::{self, member_trace, now_ms, FakeIms};
use ims_exporter::ims::model::Member;
use serde_json::{json, Value};

const IMAGE: &str = "d164b5df-1bc3-4c3f-893e-3e471fd16e64";
/// Enough members that a page limit of 500 needs three pages (500 + 500 + 234).
const MEMBER_COUNT: usize = 1_234;
const LIMIT: usize = 500;
/// How long one run of the Python client may take (interpreter start, SDK import, requests).
const SDK_TIMEOUT: Duration = Duration::from_secs(60);
/// The fields the SDK's `ImageMember` / `ShowImageMemberResponse` models carry.
const FIELDS: [&str; 8] = [
    "member_id",
    "member_type",
    "status",
    "urn",
    "created_at",
    "updated_at",
    "image_id",
    "schema",
];
const ORG_PARENT: &str =
    "organizations::3a2d95404f964a6aba78819bf8ddc1e3:ou:o-wvntq58r3poyv180t5df1mdna4uwy9se";

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sdk")
        .join(name)
}

/// Whether `python3` can import `module` of the official SDK `package`; under
/// `CI=true` its absence fails.
fn require_python_sdk(package: &str, module: &str) -> bool {
    let probe = Command::new("python3")
        .args(["-c", &format!("import huaweicloudsdkcore, {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    let (ok, why) = match probe {
        Ok(out) => (
            out.status.success(),
            // The last line of the traceback says what is missing.
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
                .to_string(),
        ),
        Err(e) => (false, format!("cannot run python3: {e}")),
    };
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the official Huawei Cloud Python SDK ({package}) is required under CI=true; \
             run the README's test command (bash .ci/test), which installs it ({why})"
        );
        eprintln!("SKIPPED: the Huawei Cloud Python SDK ({package}) is not importable ({why}); run the README's test command (bash .ci/test) to install it");
    }
    ok
}

/// Runs the Python SDK IMS client against `endpoint` and returns its output.
async fn run_sdk(endpoint: &str, sk: &str, member_id: &str) -> Output {
    let args: Vec<String> = vec![
        endpoint.into(),
        AK.into(),
        sk.into(),
        PROJECT.into(),
        IMAGE.into(),
        member_id.into(),
        LIMIT.to_string(),
    ];
    run_python("ims_sdk_client.py", args).await
}

/// Runs the SDK client `script` of tests/sdk with `args` (off the async runtime, which
/// keeps serving the fake) and returns its output; panics if it runs past
/// [`SDK_TIMEOUT`].
async fn run_python(name: &str, args: Vec<String>) -> Output {
    let mut cmd = Command::new("python3");
    cmd.arg(script(name))
        .args(&args)
        // The SDK uses `requests`, which honours proxy variables; loopback must not be proxied.
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .env_remove("HUAWEICLOUD_SDK_AK")
        .env_remove("HUAWEICLOUD_SDK_SK")
        .env_remove("HUAWEICLOUD_SDK_SECURITY_TOKEN")
        .env_remove("HUAWEICLOUD_SDK_PROJECT_ID");
    run_tool(cmd, None, SDK_TIMEOUT).await
}

/// A member as the SDK's models see it: every field present, absent ones `null`.
fn as_sdk_sees_it(m: &Member) -> Value {
    let v = serde_json::to_value(m).expect("member to JSON");
    Value::Object(
        FIELDS
            .iter()
            .map(|f| (f.to_string(), v.get(*f).cloned().unwrap_or(Value::Null)))
            .collect(),
    )
}

/// 1,234 members: the three types in turn, each with all three statuses, distinct
/// timestamps, URNs for organizations only.
fn fill(fake: &FakeIms) {
    let state = &fake.state;
    state.add_image(PROJECT, IMAGE, "golden-ubuntu-22.04");
    let statuses = ["accepted", "pending", "rejected"];
    for i in 0..MEMBER_COUNT {
        let status = statuses[(i / 3) % 3];
        let created = format!(
            "2023-{:02}-{:02}T{:02}:{:02}:52Z",
            1 + i % 12,
            1 + i % 28,
            i % 24,
            i % 60
        );
        let updated = format!(
            "2024-{:02}-{:02}T{:02}:07:{:02}Z",
            1 + i % 12,
            1 + i % 28,
            i % 24,
            i % 60
        );
        let m = match i % 3 {
            0 => fake_ims::member(
                IMAGE,
                &format!("{:08x}{:024x}", i.wrapping_mul(2_654_435_761) as u32, i),
                "project",
                status,
                &created,
                &updated,
                None,
            ),
            1 => fake_ims::member(
                IMAGE,
                &format!("d{:07x}{:024x}", i, i * 7919),
                "domain",
                status,
                &created,
                &updated,
                None,
            ),
            _ => {
                let id = format!("ou-{:04}x1bvygwrplokk622i9gbn3f5ftf", i);
                let urn = format!("{ORG_PARENT}/{id}");
                fake_ims::member(
                    IMAGE,
                    &id,
                    "organization",
                    status,
                    &created,
                    &updated,
                    Some(&urn),
                )
            }
        };
        state.put_member(PROJECT, m);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn official_python_sdk_reads_the_fake() {
    if !require_python_sdk("huaweicloudsdkims", "huaweicloudsdkims.v2") {
        return;
    }
    let fake = start_fake().await;
    fill(&fake);
    let expected: Vec<Member> = fake.state.members(PROJECT, IMAGE);
    assert_eq!(expected.len(), MEMBER_COUNT, "fixture");
    for t in ["project", "domain", "organization"] {
        for s in ["accepted", "pending", "rejected"] {
            assert!(
                expected
                    .iter()
                    .any(|m| m.member_type.as_deref() == Some(t) && m.status.as_deref() == Some(s)),
                "fixture lacks a {t} member that is {s}"
            );
        }
    }
    // The detail call asks for an organization member, whose URN must come through.
    let org = expected
        .iter()
        .find(|m| {
            m.member_type.as_deref() == Some("organization")
                && m.status.as_deref() == Some("rejected")
        })
        .expect("an organization member")
        .clone();

    // --- Good credentials: the SDK lists every member over three pages and reads one.
    let out = run_sdk(&fake.endpoint(), SK, &org.member_id).await;
    assert!(
        out.status.success(),
        "the SDK client failed against the fake:\n{}",
        describe(&out)
    );
    let got: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("SDK output is not JSON ({e}):\n{}", describe(&out)));

    assert_eq!(
        got["pages"],
        json!(MEMBER_COUNT.div_ceil(LIMIT)),
        "pages the SDK needed at limit {LIMIT}"
    );
    // The markers are Base64 with `=` padding, so the SDK had to percent-encode them in
    // the query it signed and sent, and the fake had to decode the same way to verify.
    let markers = got["markers"].as_array().expect("markers array");
    assert_eq!(
        markers.len(),
        MEMBER_COUNT.div_ceil(LIMIT) - 1,
        "markers followed"
    );
    assert!(
        markers
            .iter()
            .any(|m| m.as_str().is_some_and(|m| m.contains('='))),
        "no marker needed percent-encoding, so the test would not cover it: {markers:?}"
    );
    let got_members = got["members"].as_array().expect("members array");
    assert_eq!(got_members.len(), MEMBER_COUNT, "members the SDK saw");
    // Exact, field by field: nothing lost, duplicated or mangled across pages. The page
    // order is the fake's business, so compare by member ID.
    let by_id = |v: &Value| v["member_id"].as_str().expect("member_id").to_string();
    let got_by_id: BTreeMap<String, &Value> = got_members.iter().map(|m| (by_id(m), m)).collect();
    assert_eq!(
        got_by_id.len(),
        got_members.len(),
        "the SDK saw a member twice"
    );
    let want_by_id: BTreeMap<String, Value> = expected
        .iter()
        .map(|m| (m.member_id.clone(), as_sdk_sees_it(m)))
        .collect();
    for (id, want) in &want_by_id {
        assert_eq!(
            got_by_id.get(id).copied(),
            Some(want),
            "member {id} as the SDK decoded it"
        );
    }
    assert!(
        got_by_id.keys().all(|id| want_by_id.contains_key(id)),
        "the SDK saw members the fake does not hold"
    );
    let orgs_with_urn = got_members
        .iter()
        .filter(|m| {
            m["member_type"] == "organization"
                && m["urn"].as_str().is_some_and(|u| u.starts_with(ORG_PARENT))
        })
        .count();
    assert_eq!(
        orgs_with_urn,
        MEMBER_COUNT / 3,
        "organizations with URN seen by the SDK"
    );
    assert_eq!(
        got["detail"],
        as_sdk_sees_it(&org),
        "member detail as the SDK decoded it"
    );
    assert_eq!(
        got["detail"]["urn"],
        json!(format!("{ORG_PARENT}/{}", org.member_id))
    );

    assert_eq!(
        fake.state.rejected_signatures(),
        0,
        "the fake refused a signature made by the official SDK"
    );
    // Three list pages and one detail, each exactly once: the SDK had no reason to retry.
    assert_eq!(
        fake.state.requests(),
        4,
        "requests the fake answered for the SDK"
    );

    // --- Wrong SK: the fake refuses like the API gateway, and the SDK reports it as such.
    let wrong_sk = "SKWRONGEXAMPLE000000000000000000000000000";
    assert_ne!(wrong_sk, SK);
    let out = run_sdk(&fake.endpoint(), wrong_sk, &org.member_id).await;
    assert!(
        !out.status.success(),
        "the SDK succeeded with a wrong SK:\n{}",
        describe(&out)
    );
    let text = describe(&out);
    assert!(
        text.contains("APIGW.0301"),
        "the SDK's error does not name APIGW.0301:\n{text}"
    );
    let err: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("SDK error output is not JSON ({e}):\n{text}"));
    assert_eq!(err["error"]["status_code"], json!(401), "{text}");
    assert_eq!(err["error"]["error_code"], json!("APIGW.0301"), "{text}");
    assert!(
        err["error"]["request_id"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "no request id:\n{text}"
    );
    assert!(
        fake.state.rejected_signatures() >= 1,
        "the fake did not count the refused signature"
    );

    // --- A member the image is not shared with: 404 with the IMS error code.
    let out = run_sdk(&fake.endpoint(), SK, "ffffffffffffffffffffffffffffffff").await;
    assert!(
        !out.status.success(),
        "the SDK found a member that does not exist:\n{}",
        describe(&out)
    );
    let err: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("SDK error output is not JSON ({e}):\n{}", describe(&out)));
    assert_eq!(
        err["error"]["status_code"],
        json!(404),
        "{}",
        describe(&out)
    );
    assert_eq!(
        err["error"]["error_code"],
        json!("IMG.0206"),
        "{}",
        describe(&out)
    );

    fake.stop().await;
}

/// IMS traces the CTS client must page through: more than two pages of 200.
const TRACE_COUNT: usize = 450;
const TRACE_LIMIT: usize = 200;
/// The fields of the SDK's `Traces` model the fake fills, besides `user`.
const TRACE_FIELDS: [&str; 17] = [
    "trace_id",
    "trace_name",
    "trace_rating",
    "trace_type",
    "service_type",
    "resource_type",
    "resource_id",
    "resource_name",
    "request",
    "response",
    "code",
    "api_version",
    "time",
    "record_time",
    "source_ip",
    "request_id",
    "location_info",
];

/// A trace as the CTS client script prints what the SDK decoded: every field present.
fn trace_as_sdk_sees_it(t: &Value) -> Value {
    let mut v: serde_json::Map<String, Value> = TRACE_FIELDS
        .iter()
        .map(|f| (f.to_string(), t.get(*f).cloned().unwrap_or(Value::Null)))
        .collect();
    let u = &t["user"];
    v.insert(
        "user".into(),
        json!({"id": u["id"], "name": u["name"], "domain": {"id": u["domain"]["id"], "name": u["domain"]["name"]}}),
    );
    Value::Object(v)
}

/// Runs the Python SDK CTS client against `endpoint` for the window `[from, to]`.
async fn run_cts_sdk(endpoint: &str, sk: &str, from: i64, to: i64, limit: usize) -> Output {
    let args: Vec<String> = vec![
        endpoint.into(),
        AK.into(),
        sk.into(),
        PROJECT.into(),
        from.to_string(),
        to.to_string(),
        limit.to_string(),
    ];
    run_python("cts_sdk_client.py", args).await
}

#[tokio::test(flavor = "multi_thread")]
async fn official_python_cts_sdk_pages_the_fakes_traces() {
    if !require_python_sdk("huaweicloudsdkcts", "huaweicloudsdkcts.v3") {
        return;
    }
    let fake = start_fake().await;
    let now = now_ms();
    let (from, to) = (now - 3_600_000, now);
    let names = ["addMember", "updateMember", "deleteMember"];
    let actors = ["alice", "release-bot", "bob@example.com"];
    let images = [IMAGE, "370befec-a369-475e-a224-44a45927a8fe"];
    let mut expected: Vec<Value> = (0..TRACE_COUNT)
        .map(|i| {
            // Two traces per 10 ms: ties are ordered by trace ID.
            let time = now - 60_000 - (i / 2) as i64 * 10;
            member_trace(
                names[i % 3],
                images[i % 2],
                &format!("{i:032x}"),
                actors[i % 3],
                &format!("192.0.2.{}", i % 250),
                time,
                time + 800,
            )
        })
        .collect();
    for t in &expected {
        fake.state.add_trace(PROJECT, t.clone());
    }
    // Not listed: another service, before the window, not yet recorded.
    let mut ecs = member_trace(
        "createServer",
        IMAGE,
        "x",
        "alice",
        "192.0.2.1",
        now - 1_000,
        now - 900,
    );
    ecs["service_type"] = json!("ECS");
    let early = member_trace(
        "addMember",
        IMAGE,
        "y",
        "alice",
        "192.0.2.1",
        from - 1,
        from,
    );
    let unrecorded = member_trace(
        "addMember",
        IMAGE,
        "z",
        "alice",
        "192.0.2.1",
        now - 1_000,
        now + 3_600_000,
    );
    for t in [ecs, early, unrecorded] {
        fake.state.add_trace(PROJECT, t);
    }
    let key = |t: &Value| {
        (
            -t["time"].as_i64().unwrap(),
            t["trace_id"].as_str().unwrap().to_string(),
        )
    };
    expected.sort_by_key(key);

    // --- Good credentials: three pages, every trace once, newest first.
    let out = run_cts_sdk(&fake.endpoint(), SK, from, to, TRACE_LIMIT).await;
    assert!(
        out.status.success(),
        "the SDK CTS client failed against the fake:\n{}",
        describe(&out)
    );
    let got: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("SDK output is not JSON ({e}):\n{}", describe(&out)));
    assert_eq!(got["pages"], json!(TRACE_COUNT.div_ceil(TRACE_LIMIT)));
    assert_eq!(got["counts"], json!([200, 200, 50]));
    let got_traces = got["traces"].as_array().expect("traces array");
    assert_eq!(got_traces.len(), TRACE_COUNT, "traces the SDK saw");
    let got_ids: Vec<&str> = got_traces
        .iter()
        .map(|t| t["trace_id"].as_str().unwrap_or(""))
        .collect();
    let want_ids: Vec<&str> = expected
        .iter()
        .map(|t| t["trace_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        got_ids, want_ids,
        "order and completeness of the SDK's pages"
    );
    for (got, want) in got_traces.iter().zip(&expected) {
        assert_eq!(
            got,
            &trace_as_sdk_sees_it(want),
            "trace as the SDK decoded it"
        );
    }
    // What the exporter reads of a member trace, explicitly.
    let (first, want) = (&got_traces[0], &expected[0]);
    for field in [
        "trace_id",
        "trace_name",
        "resource_id",
        "source_ip",
        "time",
        "record_time",
    ] {
        assert_eq!(first[field], want[field], "{field}");
    }
    assert_eq!(first["user"]["name"], want["user"]["name"]);
    assert!(
        first["time"].as_i64().is_some() && first["record_time"].as_i64() > first["time"].as_i64()
    );
    let markers = got["markers"].as_array().expect("markers");
    assert_eq!(markers.len(), 2);
    let queries = fake.state.cts_queries();
    assert_eq!(
        queries
            .iter()
            .map(|q| q.next.as_ref().map(|m| json!(m)))
            .collect::<Vec<_>>(),
        [None, Some(markers[0].clone()), Some(markers[1].clone())],
        "the markers the SDK sent back as next"
    );
    assert!(
        queries
            .iter()
            .all(|q| (q.from, q.to, q.limit) == (Some(from), Some(to), Some(TRACE_LIMIT as u32))),
        "{queries:?}"
    );
    assert_eq!(
        fake.state.rejected_signatures(),
        0,
        "the fake refused the SDK's signature"
    );
    assert_eq!(
        fake.state.cts_requests(),
        3,
        "trace-list requests: the SDK had no reason to retry"
    );
    assert_eq!(
        fake.state.requests(),
        0,
        "trace lists counted as IMS requests"
    );

    // --- Wrong SK: refused like the API gateway, reported as such by the SDK.
    let out = run_cts_sdk(
        &fake.endpoint(),
        "SKWRONGEXAMPLE000000000000000000000000000",
        from,
        to,
        TRACE_LIMIT,
    )
    .await;
    assert!(
        !out.status.success(),
        "the SDK succeeded with a wrong SK:\n{}",
        describe(&out)
    );
    let err: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("SDK error output is not JSON ({e}):\n{}", describe(&out)));
    assert_eq!(
        err["error"]["status_code"],
        json!(401),
        "{}",
        describe(&out)
    );
    assert_eq!(
        err["error"]["error_code"],
        json!("APIGW.0301"),
        "{}",
        describe(&out)
    );

    // --- A query CTS refuses: the SDK reads CTS's error format and the request ID.
    let out = run_cts_sdk(&fake.endpoint(), SK, from, to, TRACE_LIMIT + 1).await;
    assert!(
        !out.status.success(),
        "the SDK succeeded with limit 201:\n{}",
        describe(&out)
    );
    assert_sdk_error(&out, 400, "CTS.0001");

    fake.stop().await;
}

/// Images offered to the project by status: two full pages of [`OFFER_LIMIT`] and a
/// short one, two full and a short one, and exactly one full page (then an empty one).
const OFFERS: [(&str, usize); 3] = [("pending", 590), ("accepted", 410), ("rejected", 200)];
const OFFER_LIMIT: usize = 200;
/// Where the fixture's offers come from.
const OWNERS: [&str; 3] = [
    "5e1f0c2d3b4a59687766554433221100",
    "9f8e7d6c5b4a39281706f5e4d3c2b1a0",
    "c0ffee00c0ffee00c0ffee00c0ffee00",
];

/// Runs the Python SDK client of the shared listing for `statuses` at `limit`.
async fn run_shared_sdk(endpoint: &str, sk: &str, limit: usize, statuses: &[&str]) -> Output {
    let mut args: Vec<String> = vec![
        endpoint.into(),
        AK.into(),
        sk.into(),
        PROJECT.into(),
        limit.to_string(),
    ];
    args.extend(statuses.iter().map(|s| s.to_string()));
    run_python("ims_shared_sdk_client.py", args).await
}

/// Offers [`OFFERS`] to [`PROJECT`] (and a few to another project, which must not
/// show); returns, per status, the (id, name, owner) the SDK must see, by ID.
fn offer_fixture(fake: &FakeIms) -> BTreeMap<&'static str, Vec<(String, String, String)>> {
    let mut want: BTreeMap<&'static str, Vec<(String, String, String)>> = BTreeMap::new();
    let mut i = 0usize;
    for (status, count) in OFFERS {
        for _ in 0..count {
            let id = format!(
                "{:08x}-{:04x}-4{:03x}-a000-{i:012x}",
                (i as u32).wrapping_mul(2_654_435_761),
                i % 0xffff,
                i % 0xfff
            );
            // Names with spaces, quotes and non-ASCII letters must come through too.
            let name = match i % 4 {
                0 => format!("base-ubuntu-24.04-{i}"),
                1 => format!("Partner \"appliance\" {i}"),
                2 => format!("镜像-{i}-ü"),
                _ => format!("gpu_image.{i}"),
            };
            let owner = OWNERS[i % OWNERS.len()];
            fake.state.offer_image(PROJECT, &id, &name, owner, status);
            want.entry(status)
                .or_default()
                .push((id, name, owner.to_string()));
            i += 1;
        }
    }
    for (k, status) in ["pending", "accepted", "rejected"].into_iter().enumerate() {
        let id = format!("00000000-0000-4000-8000-{k:012x}");
        fake.state.offer_image(
            "0123456789abcdef0123456789abcdef",
            &id,
            "someone-elses",
            OWNERS[0],
            status,
        );
    }
    for images in want.values_mut() {
        images.sort();
    }
    want
}

#[tokio::test(flavor = "multi_thread")]
async fn official_python_sdk_lists_the_images_offered_to_a_project() {
    if !require_python_sdk("huaweicloudsdkims", "huaweicloudsdkims.v2") {
        return;
    }
    let fake = start_fake().await;
    let want = offer_fixture(&fake);
    let statuses: Vec<&str> = OFFERS.iter().map(|(s, _)| *s).collect();

    // --- Good credentials: every status paged to its end, every image once.
    let out = run_shared_sdk(&fake.endpoint(), SK, OFFER_LIMIT, &statuses).await;
    assert!(
        out.status.success(),
        "the SDK client failed against the fake:\n{}",
        describe(&out)
    );
    let got: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("SDK output is not JSON ({e}):\n{}", describe(&out)));
    let mut pages_total = 0;
    let mut want_queries = Vec::new();
    for (status, count) in OFFERS {
        let listed = &got[status];
        // A full last page needs one more, empty, to know it was the last.
        let pages = count / OFFER_LIMIT + 1;
        assert_eq!(listed["pages"], json!(pages), "{status}");
        pages_total += pages;
        let images = listed["images"].as_array().expect("images array");
        let expected = &want[status];
        assert_eq!(images.len(), expected.len(), "{status}: images the SDK saw");
        for (image, (id, name, owner)) in images.iter().zip(expected) {
            let as_sdk_sees_it = json!({
                "id": id,
                "name": name,
                "owner": owner,
                "visibility": "shared",
                "imagetype": "shared",
                "status": "active",
                "protected": false,
                "min_disk": 40,
            });
            assert_eq!(
                image, &as_sdk_sees_it,
                "{status}: image as the SDK decoded it"
            );
        }
        let markers = listed["markers"].as_array().expect("markers");
        assert_eq!(markers.len(), pages - 1, "{status}");
        want_queries.push(None);
        for m in markers {
            want_queries.push(Some(m.as_str().expect("marker").to_string()));
        }
        for page in 1..pages {
            assert_eq!(
                markers[page - 1],
                json!(expected[page * OFFER_LIMIT - 1].0),
                "{status}: the marker is the last image ID of page {page}"
            );
        }
    }
    // What the SDK sent: the project header, each status, the limit, the markers.
    let queries = fake.state.shared_queries();
    assert_eq!(
        queries.iter().map(|q| q.marker.clone()).collect::<Vec<_>>(),
        want_queries
    );
    let sent_statuses: Vec<&str> = queries
        .iter()
        .filter_map(|q| q.member_status.as_deref())
        .collect();
    let want_statuses: Vec<&str> = OFFERS
        .iter()
        .flat_map(|(s, n)| std::iter::repeat_n(*s, n / OFFER_LIMIT + 1))
        .collect();
    assert_eq!(sent_statuses, want_statuses);
    assert!(
        queries.iter().all(
            |q| q.project_id.as_deref() == Some(PROJECT) && q.limit == Some(OFFER_LIMIT as u32)
        ),
        "{queries:?}"
    );
    assert_eq!(
        fake.state.rejected_signatures(),
        0,
        "the fake refused a signature made by the official SDK"
    );
    assert_eq!(fake.state.shared_list_requests(), pages_total as u64);
    assert_eq!(
        fake.state.requests(),
        pages_total as u64,
        "the SDK had no reason to retry"
    );

    // --- Wrong SK: refused like the API gateway, reported as such by the SDK.
    let wrong_sk = "SKWRONGEXAMPLE000000000000000000000000000";
    let out = run_shared_sdk(&fake.endpoint(), wrong_sk, OFFER_LIMIT, &["pending"]).await;
    assert!(!out.status.success(), "{}", describe(&out));
    let err: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("SDK error output is not JSON ({e}):\n{}", describe(&out)));
    assert_eq!(
        err["error"]["status_code"],
        json!(401),
        "{}",
        describe(&out)
    );
    assert_eq!(
        err["error"]["error_code"],
        json!("APIGW.0301"),
        "{}",
        describe(&out)
    );

    // --- A limit IMS refuses: the SDK reads IMS's error format and the request ID.
    let out = run_shared_sdk(&fake.endpoint(), SK, 1001, &["accepted"]).await;
    assert!(!out.status.success(), "{}", describe(&out));
    assert_sdk_error(&out, 400, "IMG.0001");
    fake.stop().await;
}

/// What an SDK script printed for a service error: `status`, `code` and the fake's
/// 32-hex request ID, as the SDK read them from the answer.
fn assert_sdk_error(out: &std::process::Output, status: u16, code: &str) {
    let err: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("SDK error output is not JSON ({e}):\n{}", describe(out)));
    assert_eq!(
        err["error"]["status_code"],
        json!(status),
        "{}",
        describe(out)
    );
    assert_eq!(err["error"]["error_code"], json!(code), "{}", describe(out));
    assert!(
        err["error"]["request_id"]
            .as_str()
            .is_some_and(|r| r.len() == 32),
        "{}",
        describe(out)
    );
}
