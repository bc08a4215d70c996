//! The fake IMS itself refuses what the real API gateway refuses, so tests that pass
//! against it mean something: unsigned, stale, wrongly signed and tokenless requests.
//! Its Cloud Trace Service trace list behaves like CTS's: markers, windows, recording
//! lag, refused queries, signatures and injected faults. Its listing of the images
//! other tenants offer to a project (`__imagetype=shared`) pages by image ID, filters
//! by member status, is scoped by `X-Project-Id` and takes its own faults.

use std::time::Duration;

use crate::support::*;
use ims_exporter::auth::credentials::Secret;
use ims_exporter::auth::signer::{self, RequestParts};
use ims_exporter::fake_ims::{
    self, member, member_trace, now_ms, Canned, CtsQuery, FakeIms, Fault, SharedQuery,
};
use serde_json::{json, Value};

const IMG: &str = "d164b5df-1bc3-4c3f-893e-3e471fd16e64";

/// Sends a GET signed with `sk` (or unsigned) and a chosen X-Sdk-Date.
async fn get(
    url: &str,
    sk: Option<&str>,
    date: time::OffsetDateTime,
    token: Option<&str>,
) -> (u16, serde_json::Value, Option<String>) {
    let extra: Vec<(&str, &str)> = token.map(|t| ("x-security-token", t)).into_iter().collect();
    signed_get(url, sk, date, &extra).await
}

/// Sends a GET with the `extra` headers, all signed with `sk` (or unsigned), and a
/// chosen X-Sdk-Date.
async fn signed_get(
    url: &str,
    sk: Option<&str>,
    date: time::OffsetDateTime,
    extra: &[(&str, &str)],
) -> (u16, serde_json::Value, Option<String>) {
    let parsed = reqwest::Url::parse(url).unwrap();
    let date = date.format(signer::DATE_FORMAT).unwrap();
    let host = format!("{}:{}", parsed.host_str().unwrap(), parsed.port().unwrap());
    let mut headers = vec![
        ("host".to_string(), host),
        ("x-sdk-date".to_string(), date.clone()),
    ];
    let query: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    let mut req = reqwest::Client::new().get(url).header("x-sdk-date", &date);
    for (k, v) in extra {
        headers.push((k.to_string(), v.to_string()));
        req = req.header(*k, *v);
    }
    if let Some(sk) = sk {
        let parts = RequestParts {
            method: "GET",
            path: parsed.path(),
            query: &query,
            headers: &headers,
            body: b"",
        };
        req = req.header(
            "authorization",
            signer::authorization(AK, &Secret::new(sk), &parts).unwrap(),
        );
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let rid = resp
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_string());
    let body = resp.json().await.unwrap_or(serde_json::Value::Null);
    (status, body, rid)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fake_checks_signatures_like_the_gateway() {
    let fake = start_fake().await;
    fake.state.put_member(
        PROJECT,
        member(
            IMG,
            "edc89b490d7d4392898e19b2deb34797",
            "project",
            "accepted",
            "2023-08-23T04:07:52Z",
            "2023-08-23T04:07:52Z",
            None,
        ),
    );
    let url = format!(
        "{}/v1/{PROJECT}/cloudimages/{IMG}/members?limit=10",
        fake.endpoint()
    );
    let now = time::OffsetDateTime::now_utc();

    let (status, body, rid) = get(&url, Some(SK), now, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["members"][0]["member_id"],
        "edc89b490d7d4392898e19b2deb34797"
    );
    assert!(
        body.get("page_info").is_none(),
        "one page: no page_info, like the seed example"
    );
    assert_eq!(rid.map(|r| r.len()), Some(32));

    for (what, sk, date) in [
        ("unsigned", None, now),
        ("wrong secret key", Some("nope"), now),
        (
            "stale date",
            Some(SK),
            now - std::time::Duration::from_secs(16 * 60),
        ),
        (
            "future date",
            Some(SK),
            now + std::time::Duration::from_secs(16 * 60),
        ),
    ] {
        let (status, body, _) = get(&url, sk, date, None).await;
        assert_eq!(status, 401, "{what}");
        assert_eq!(body["error_code"], "APIGW.0301", "{what}: {body}");
    }
    assert_eq!(fake.state.rejected_signatures(), 4);

    // Temporary credentials: the token must be sent and signed.
    fake.state.add_account(AK, SK, Some("tok"));
    assert_eq!(get(&url, Some(SK), now, None).await.0, 401);
    assert_eq!(get(&url, Some(SK), now, Some("other")).await.0, 401);
    assert_eq!(get(&url, Some(SK), now, Some("tok")).await.0, 200);
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fake_pages_with_opaque_markers_and_injects_faults() {
    let fake = start_fake().await;
    for i in 0..25 {
        fake.state.put_member(
            PROJECT,
            member(
                IMG,
                &format!("m{i:02}"),
                "project",
                "accepted",
                "2025-01-01T00:00:00Z",
                "2025-01-01T00:00:00Z",
                None,
            ),
        );
    }
    let base = format!("{}/v1/{PROJECT}/cloudimages/{IMG}/members", fake.endpoint());
    let now = time::OffsetDateTime::now_utc();
    let mut ids = Vec::new();
    let mut url = format!("{base}?limit=10");
    let mut pages = 0;
    loop {
        let (status, body, _) = get(&url, Some(SK), now, None).await;
        assert_eq!(status, 200, "{body}");
        pages += 1;
        ids.extend(
            body["members"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["member_id"].as_str().unwrap().to_string()),
        );
        match body["page_info"]["next_marker"].as_str() {
            Some(marker) => url = format!("{base}?limit=10&marker={}", signer::encode(marker)),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(ids, (0..25).map(|i| format!("m{i:02}")).collect::<Vec<_>>());
    assert_eq!(
        get(&format!("{base}?limit=1001"), Some(SK), now, None)
            .await
            .0,
        400
    );
    assert_eq!(
        get(&format!("{base}?marker=%25%25"), Some(SK), now, None)
            .await
            .0,
        400
    );

    fake.state.set_fault(IMG, Some(Fault::Throttle));
    let (status, body, _) = get(&base, Some(SK), now, None).await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (429, Some("APIGW.0308"))
    );
    fake.state.set_fault(IMG, Some(Fault::Status(503)));
    let (status, body, _) = get(&base, Some(SK), now, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("IMG.0999"))
    );
    fake.state.set_fault(IMG, Some(Fault::BrokenBody));
    let (status, body, _) = get(&base, Some(SK), now, None).await;
    assert_eq!(
        (status, body),
        (200, serde_json::Value::Null),
        "a body that is not JSON"
    );
    fake.state.set_fault(IMG, Some(Fault::FailPage(1)));
    assert_eq!(
        get(&format!("{base}?limit=10"), Some(SK), now, None)
            .await
            .0,
        200
    );
    fake.stop().await;
}

/// `GET /v3/{PROJECT}/traces?{query}`, signed with `sk` (or unsigned), dated now.
async fn list_traces(
    fake: &FakeIms,
    query: &str,
    sk: Option<&str>,
) -> (u16, Value, Option<String>) {
    let url = format!("{}/v3/{PROJECT}/traces?{query}", fake.endpoint());
    get(&url, sk, time::OffsetDateTime::now_utc(), None).await
}

/// The trace IDs of a trace-list answer, in its order.
fn trace_ids(body: &Value) -> Vec<String> {
    body["traces"]
        .as_array()
        .unwrap_or_else(|| panic!("no traces list: {body}"))
        .iter()
        .map(|t| t["trace_id"].as_str().unwrap().to_string())
        .collect()
}

/// An `addMember` trace of [`IMG`] for member `i`, made at `time` and recorded a
/// second later.
fn trace_at(i: usize, time: i64) -> Value {
    member_trace(
        "addMember",
        IMG,
        &member_id(i),
        "alice",
        "192.0.2.1",
        time,
        time + 1_000,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fake_cts_pages_every_trace_once_newest_first() {
    const TRACES: usize = 450;
    const LIMIT: usize = 200;
    let fake = start_fake().await;
    let now = now_ms();
    let newest = now - 60_000;
    // Three traces per second (ties broken by trace ID), added out of order.
    let mut expected: Vec<(i64, String)> = Vec::new();
    for k in 0..TRACES {
        let i = (k * 7) % TRACES;
        let t = trace_at(i, newest - (i / 3) as i64 * 1_000);
        expected.push((
            t["time"].as_i64().unwrap(),
            t["trace_id"].as_str().unwrap().into(),
        ));
        fake.state.add_trace(PROJECT, t);
    }
    expected.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let expected: Vec<String> = expected.into_iter().map(|(_, id)| id).collect();

    let (from, to) = (now - 3_600_000, now);
    let window = format!("trace_type=system&service_type=IMS&from={from}&to={to}&limit={LIMIT}");
    let mut seen = Vec::new();
    let mut markers = Vec::new();
    let mut sizes = Vec::new();
    let mut query = window.clone();
    loop {
        let (status, body, rid) = list_traces(&fake, &query, Some(SK)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(rid.map(|r| r.len()), Some(32));
        let ids = trace_ids(&body);
        assert_eq!(
            body["meta_data"]["count"],
            ids.len(),
            "{}",
            body["meta_data"]
        );
        sizes.push(ids.len());
        seen.extend(ids.iter().cloned());
        match body["meta_data"]["marker"].as_str() {
            Some(marker) => {
                assert_eq!(
                    Some(marker),
                    ids.last().map(String::as_str),
                    "the marker is the page's last trace"
                );
                markers.push(marker.to_string());
                query = format!("{window}&next={marker}");
            }
            None => {
                assert!(
                    body["meta_data"]["marker"].is_null(),
                    "{}",
                    body["meta_data"]
                );
                break;
            }
        }
        assert!(sizes.len() <= TRACES / LIMIT + 1, "paging does not end");
    }
    assert_eq!(sizes, [200, 200, 50]);
    assert_eq!(
        seen, expected,
        "every trace once, newest first, ties by trace_id"
    );

    // The queries as sent, and trace lists are not counted among the IMS requests.
    let queries = fake.state.cts_queries();
    let want: Vec<CtsQuery> = [None, Some(&markers[0]), Some(&markers[1])]
        .into_iter()
        .map(|next| CtsQuery {
            from: Some(from),
            to: Some(to),
            next: next.cloned(),
            limit: Some(LIMIT as u32),
        })
        .collect();
    assert_eq!(queries, want);
    assert_eq!(fake.state.cts_requests(), 3);
    assert_eq!(
        fake.state.requests(),
        0,
        "trace lists counted as IMS requests"
    );

    // Without limit nor window: ten traces of the last hour.
    let (status, body, _) = list_traces(&fake, "trace_type=system", Some(SK)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(trace_ids(&body), expected[..10]);
    assert_eq!(body["meta_data"]["marker"], expected[9].as_str());
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fake_cts_filters_by_window_and_service() {
    let fake = start_fake().await;
    let now = now_ms();
    let (t_old, t0, t1) = (now - 2 * 3_600_000, now - 30 * 60_000, now - 20 * 60_000);
    let old = trace_at(0, t_old);
    let first = trace_at(1, t0);
    let second = member_trace(
        "deleteMember",
        IMG,
        &member_id(1),
        "bob",
        "192.0.2.2",
        t1,
        t1 + 500,
    );
    let mut ecs = trace_at(2, now - 10 * 60_000);
    ecs["service_type"] = "ECS".into();
    ecs["trace_name"] = "createServer".into();
    for t in [&old, &first, &second, &ecs] {
        fake.state.add_trace(PROJECT, t.clone());
    }
    let id = |t: &Value| t["trace_id"].as_str().unwrap().to_string();
    let ids = async |query: String| {
        let (status, body, _) = list_traces(&fake, &query, Some(SK)).await;
        assert_eq!(status, 200, "{query}: {body}");
        trace_ids(&body)
    };
    let q = |rest: String| format!("trace_type=system&limit=200&{rest}");

    // Both ends are inclusive.
    assert_eq!(ids(q(format!("from={t1}&to={t1}"))).await, [id(&second)]);
    assert_eq!(
        ids(q(format!("from={t0}&to={t1}"))).await,
        [id(&second), id(&first)]
    );
    assert_eq!(
        ids(q(format!("from={}&to={}", t0 + 1, t1 - 1))).await,
        Vec::<String>::new()
    );
    assert_eq!(
        ids(q(format!("from={t_old}&to={now}"))).await,
        [id(&ecs), id(&second), id(&first), id(&old)]
    );
    // Without a window: the last hour.
    assert_eq!(
        ids(q(String::new())).await,
        [id(&ecs), id(&second), id(&first)]
    );
    // Exact filters.
    assert_eq!(
        ids(q(format!("service_type=IMS&from={t_old}&to={now}"))).await,
        [id(&second), id(&first), id(&old)]
    );
    assert_eq!(ids(q("service_type=ECS".into())).await, [id(&ecs)]);
    assert_eq!(
        ids(q("service_type=ims".into())).await,
        Vec::<String>::new()
    );
    assert_eq!(
        ids(q("service_type=IMS&trace_name=deleteMember".into())).await,
        [id(&second)]
    );
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fake_cts_lists_a_trace_only_once_recorded() {
    let fake = start_fake().await;
    let now = now_ms();
    let recorded = trace_at(0, now - 5_000);
    // Recorded in an hour: never listed during this test.
    let mut later = trace_at(1, now - 4_000);
    later["record_time"] = (now + 3_600_000).into();
    // Recorded a second and a half from now.
    let lagging = member_trace(
        "addMember",
        IMG,
        &member_id(2),
        "alice",
        "192.0.2.1",
        now,
        now + 1_500,
    );
    for t in [&recorded, &later, &lagging] {
        fake.state.add_trace(PROJECT, t.clone());
    }
    let id = |t: &Value| t["trace_id"].as_str().unwrap().to_string();
    let record_time = lagging["record_time"].as_i64().unwrap();
    let lists = wait_for("the lagging trace to be recorded", async || {
        let (status, body, _) = list_traces(&fake, "trace_type=system", Some(SK)).await;
        let answered = now_ms();
        assert_eq!(status, 200, "{body}");
        let ids = trace_ids(&body);
        assert!(ids.contains(&id(&recorded)), "{ids:?}");
        assert!(
            !ids.contains(&id(&later)),
            "a trace listed before its record_time"
        );
        if ids.contains(&id(&lagging)) {
            assert!(
                answered >= record_time,
                "listed {} ms before its record_time",
                record_time - answered
            );
            Some(ids)
        } else {
            None
        }
    })
    .await;
    assert_eq!(lists, [id(&lagging), id(&recorded)]);
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fake_cts_refuses_bad_queries() {
    let fake = start_fake().await;
    let now = now_ms();
    fake.state.add_trace(PROJECT, trace_at(0, now - 1_000));
    for (what, query) in [
        ("no trace_type", "limit=10".to_string()),
        ("data traces", "trace_type=data".into()),
        ("limit 0", "trace_type=system&limit=0".into()),
        ("limit 201", "trace_type=system&limit=201".into()),
        ("limit not a number", "trace_type=system&limit=ten".into()),
        (
            "unknown marker",
            "trace_type=system&next=4f3c0d5e-0000-4000-8000-000000000000".into(),
        ),
        ("from without to", format!("trace_type=system&from={now}")),
        ("to without from", format!("trace_type=system&to={now}")),
        (
            "from after to",
            format!("trace_type=system&from={now}&to={}", now - 1),
        ),
        (
            "from not a number",
            "trace_type=system&from=yesterday&to=1".into(),
        ),
    ] {
        let (status, body, rid) = list_traces(&fake, &query, Some(SK)).await;
        assert_eq!(status, 400, "{what}: {body}");
        assert_eq!(body["error_code"], "CTS.0001", "{what}: {body}");
        assert!(
            body["error_msg"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {body}"
        );
        assert_eq!(rid.map(|r| r.len()), Some(32), "{what}");
    }
    // The limits themselves are fine.
    for limit in [1, 200] {
        let (status, body, _) =
            list_traces(&fake, &format!("trace_type=system&limit={limit}"), Some(SK)).await;
        assert_eq!(
            (status, trace_ids(&body).len()),
            (200, 1),
            "limit {limit}: {body}"
        );
    }
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fake_cts_checks_signatures_and_injects_faults() {
    let fake = start_fake().await;
    let now = now_ms();
    for i in 0..5 {
        fake.state
            .add_trace(PROJECT, trace_at(i, now - 10_000 - i as i64));
    }
    fake.state.put_member(
        PROJECT,
        member(
            IMG, MEMBER, "project", "accepted", SHARED_AT, SHARED_AT, None,
        ),
    );
    let q = "trace_type=system&limit=2";

    // Signatures as on the IMS routes.
    for (what, sk) in [("unsigned", None), ("wrong secret key", Some("nope"))] {
        let (status, body, rid) = list_traces(&fake, q, sk).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(body["error_code"], "APIGW.0301", "{what}: {body}");
        assert!(rid.is_some(), "{what}");
    }
    assert_eq!(fake.state.rejected_signatures(), 2);
    assert_eq!(fake.state.cts_requests(), 2, "refused requests count too");
    assert_eq!(list_traces(&fake, q, Some(SK)).await.0, 200);

    // A fault of the project's trace list: CTS's error format, nothing else affected.
    fake.state.set_cts_fault(PROJECT, Some(Fault::Status(500)));
    let (status, body, rid) = list_traces(&fake, q, Some(SK)).await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (500, Some("CTS.0001")),
        "{body}"
    );
    assert!(rid.is_some());
    let members = format!("{}/v1/{PROJECT}/cloudimages/{IMG}/members", fake.endpoint());
    let now_date = time::OffsetDateTime::now_utc();
    assert_eq!(
        get(&members, Some(SK), now_date, None).await.0,
        200,
        "a CTS fault reached IMS"
    );
    fake.state.set_cts_fault(PROJECT, None);
    fake.state.set_fault(IMG, Some(Fault::Status(503)));
    assert_eq!(
        list_traces(&fake, q, Some(SK)).await.0,
        200,
        "an image fault reached CTS"
    );
    fake.state.set_fault(IMG, None);
    fake.state.set_cts_fault(PROJECT, Some(Fault::Status(500)));
    let other = format!(
        "{}/v3/0123456789abcdef0123456789abcdef/traces?{q}",
        fake.endpoint()
    );
    assert_eq!(
        get(&other, Some(SK), now_date, None).await.0,
        200,
        "another project's traces"
    );

    // A 200 without the list, and one that is not JSON.
    fake.state.set_cts_fault(PROJECT, Some(Fault::MissingList));
    let (status, body, _) = list_traces(&fake, q, Some(SK)).await;
    assert_eq!((status, body), (200, serde_json::json!({})));
    fake.state.set_cts_fault(PROJECT, Some(Fault::BrokenBody));
    let (status, body, _) = list_traces(&fake, q, Some(SK)).await;
    assert_eq!(
        (status, body),
        (200, Value::Null),
        "a body that is not JSON"
    );

    // Throttled, then a transient failure that clears itself.
    fake.state.set_cts_fault(PROJECT, Some(Fault::Throttle));
    let (status, body, _) = list_traces(&fake, q, Some(SK)).await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (429, Some("APIGW.0308"))
    );
    fake.state.set_cts_fault(
        PROJECT,
        Some(Fault::Flaky {
            failures: 2,
            status: 503,
            retry_after: None,
        }),
    );
    let statuses = [
        list_traces(&fake, q, Some(SK)).await.0,
        list_traces(&fake, q, Some(SK)).await.0,
        list_traces(&fake, q, Some(SK)).await.0,
    ];
    assert_eq!(statuses, [503, 503, 200]);

    // The second page fails; the first is fine.
    fake.state.set_cts_fault(PROJECT, Some(Fault::FailPage(1)));
    let (status, body, _) = list_traces(&fake, q, Some(SK)).await;
    assert_eq!(status, 200, "{body}");
    let marker = body["meta_data"]["marker"].as_str().unwrap().to_string();
    let (status, body, _) = list_traces(&fake, &format!("{q}&next={marker}"), Some(SK)).await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (500, Some("CTS.0001")),
        "{body}"
    );

    // A flood: full pages and a new marker, for ever.
    fake.state.set_cts_fault(PROJECT, Some(Fault::Flood(50)));
    let mut query = q.to_string();
    let mut markers = Vec::new();
    for _ in 0..3 {
        let (status, body, _) = list_traces(&fake, &query, Some(SK)).await;
        assert_eq!(
            (status, trace_ids(&body).len()),
            (200, 50),
            "{}",
            body["meta_data"]
        );
        let marker = body["meta_data"]["marker"].as_str().unwrap().to_string();
        assert!(!markers.contains(&marker), "a flood marker repeats");
        query = format!("{q}&next={marker}");
        markers.push(marker);
    }

    // A hang: no answer within the client's patience.
    fake.state
        .set_cts_fault(PROJECT, Some(Fault::Delay(Duration::from_secs(2))));
    let hung =
        tokio::time::timeout(Duration::from_millis(300), list_traces(&fake, q, Some(SK))).await;
    assert!(
        hung.is_err(),
        "a delayed trace list answered at once: {hung:?}"
    );

    fake.state.set_cts_fault(PROJECT, None);
    let (status, body, _) = list_traces(&fake, q, Some(SK)).await;
    assert_eq!((status, trace_ids(&body).len()), (200, 2), "{body}");
    assert_eq!(
        fake.state.requests(),
        1,
        "only the member list is an IMS request"
    );
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_churn_leaves_a_trace_of_each_share_change() {
    use fake_ims::demo;
    let fake = start_fake().await;
    let churn = tokio::spawn(demo::churn(fake.state.clone(), Duration::from_millis(20)));
    let (image, _) = demo::IMAGES[0];
    let traces = wait_for("an addMember and a deleteMember trace", async || {
        let (status, body, _) = list_traces(
            &fake,
            "trace_type=system&service_type=IMS&limit=200",
            Some(SK),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let traces = body["traces"].as_array().unwrap().clone();
        let has = |name: &str| traces.iter().any(|t| t["trace_name"] == name);
        (has("addMember") && has("deleteMember")).then_some(traces)
    })
    .await;
    churn.abort();
    for t in &traces {
        assert_eq!(t["resource_type"], "image", "{t}");
        assert_eq!(t["resource_id"], image, "{t}");
        assert_eq!(t["user"]["name"], demo::CHURN_ACTOR, "{t}");
        assert_eq!(t["source_ip"], demo::CHURN_SOURCE_IP, "{t}");
        let lag = t["record_time"].as_i64().unwrap() - t["time"].as_i64().unwrap();
        assert_eq!(lag, 1_000, "{t}");
        let request: Value = serde_json::from_str(t["request"].as_str().unwrap()).unwrap();
        assert_eq!(request["member"], "7e57ab1e7e57ab1e7e57ab1e7e57ab1e", "{t}");
    }
    fake.stop().await;
}

/// Another project, which nobody offers anything.
const OTHER_PROJECT: &str = "0123456789abcdef0123456789abcdef";
const STATUSES: [&str; 3] = ["pending", "accepted", "rejected"];

/// The `i`th offered image: a UUID whose order is not `i`'s, a name, one of seven
/// owners and a member status.
fn offer(i: usize) -> (String, String, String, &'static str) {
    let id = format!(
        "{:08x}-{:04x}-4000-8000-{i:012x}",
        (i as u32).wrapping_mul(2_654_435_761),
        i % 0xffff
    );
    let owner = format!("{:032x}", 0xab_c000 + i % 7);
    (id, format!("shared-image-{i}"), owner, STATUSES[i % 3])
}

/// `GET /v2/cloudimages?__imagetype=shared&visibility=shared&{query}` for `project`
/// (the signed `X-Project-Id`, or none), signed with `sk` (or unsigned), dated now.
async fn list_offers(
    fake: &FakeIms,
    project: Option<&str>,
    query: &str,
    sk: Option<&str>,
) -> (u16, Value, Option<String>) {
    let url = format!(
        "{}/v2/cloudimages?__imagetype=shared&visibility=shared&{query}",
        fake.endpoint()
    );
    let extra: Vec<(&str, &str)> = project.map(|p| ("x-project-id", p)).into_iter().collect();
    signed_get(&url, sk, time::OffsetDateTime::now_utc(), &extra).await
}

/// The image IDs of a listing's answer, in its order.
fn image_ids(body: &Value) -> Vec<String> {
    body["images"]
        .as_array()
        .unwrap_or_else(|| panic!("no images list: {body}"))
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

/// Pages through the offers to `project` with `query` (and `limit`) by the last image
/// ID, as a client would; returns the IDs and the page sizes.
async fn page_offers(
    fake: &FakeIms,
    project: &str,
    query: &str,
    limit: usize,
) -> (Vec<String>, Vec<usize>) {
    let (mut ids, mut sizes) = (Vec::new(), Vec::new());
    let mut marker: Option<String> = None;
    loop {
        let mut q = format!("{query}&limit={limit}");
        if let Some(m) = &marker {
            q.push_str(&format!("&marker={m}"));
        }
        let (status, body, _) = list_offers(fake, Some(project), &q, Some(SK)).await;
        assert_eq!(status, 200, "{q}: {body}");
        let page = image_ids(&body);
        sizes.push(page.len());
        ids.extend(page.iter().cloned());
        if page.len() < limit {
            return (ids, sizes);
        }
        marker = page.last().cloned();
        assert!(sizes.len() <= 100, "paging does not end");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fake_pages_every_offered_image_once_in_id_order() {
    const OFFERS: usize = 1_200;
    let fake = start_fake().await;
    // An image of the project's own: never among the offers.
    fake.state.add_image(PROJECT, IMG, "golden-ubuntu-22.04");
    let mut want: Vec<(String, String, String)> = Vec::new();
    for k in 0..OFFERS {
        let i = (k * 7) % OFFERS;
        let (id, name, owner, status) = offer(i);
        fake.state.offer_image(PROJECT, &id, &name, &owner, status);
        want.push((id, name, owner));
    }
    want.sort();
    let want_ids: Vec<String> = want.iter().map(|w| w.0.clone()).collect();

    let (ids, sizes) = page_offers(&fake, PROJECT, "", 500).await;
    assert_eq!(sizes, [500, 500, 200]);
    assert_eq!(ids, want_ids, "every image once, by ID");
    // A last page that is full: the next one is empty.
    let (ids, sizes) = page_offers(&fake, PROJECT, "", 400).await;
    assert_eq!(sizes, [400, 400, 400, 0]);
    assert_eq!(ids, want_ids);

    // What a page says of each image, and what it does not (member_status).
    let (status, body, rid) = list_offers(&fake, Some(PROJECT), "", Some(SK)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(rid.map(|r| r.len()), Some(32));
    assert_eq!(image_ids(&body).len(), 500, "the default limit");
    let obj = body.as_object().unwrap();
    assert_eq!(
        obj.keys().collect::<Vec<_>>(),
        ["images"],
        "{:?}",
        obj.keys()
    );
    for (image, (id, name, owner)) in body["images"].as_array().unwrap().iter().zip(&want) {
        assert_eq!(
            (&image["id"], &image["name"], &image["owner"]),
            (
                &Value::from(id.as_str()),
                &Value::from(name.as_str()),
                &Value::from(owner.as_str())
            ),
        );
        assert_eq!(image["visibility"], "shared", "{image}");
        assert_eq!(image["__imagetype"], "shared", "{image}");
        assert_eq!(image["status"], "active", "{image}");
        assert_eq!(image["protected"], false, "{image}");
        assert!(image["min_disk"].is_u64(), "{image}");
        assert!(image.get("member_status").is_none(), "{image}");
    }

    // The queries as sent; each listing is an IMS request too.
    let queries = fake.state.shared_queries();
    assert_eq!(queries.len(), 8);
    assert_eq!(
        queries[..3],
        [
            SharedQuery {
                project_id: Some(PROJECT.into()),
                member_status: None,
                limit: Some(500),
                marker: None,
            },
            SharedQuery {
                project_id: Some(PROJECT.into()),
                member_status: None,
                limit: Some(500),
                marker: Some(want_ids[499].clone()),
            },
            SharedQuery {
                project_id: Some(PROJECT.into()),
                member_status: None,
                limit: Some(500),
                marker: Some(want_ids[999].clone()),
            },
        ]
    );
    assert_eq!(queries[7].limit, None);
    assert_eq!(fake.state.shared_list_requests(), 8);
    assert_eq!(fake.state.requests(), 8);
    assert_eq!(fake.state.rejected_signatures(), 0);
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fake_lists_offers_by_member_status_to_their_project_only() {
    let fake = start_fake().await;
    let mut by_status: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for i in 0..300 {
        let (id, name, owner, status) = offer(i);
        fake.state.offer_image(PROJECT, &id, &name, &owner, status);
        by_status.entry(status).or_default().push(id);
    }
    for ids in by_status.values_mut() {
        ids.sort();
    }
    for status in STATUSES {
        let (ids, sizes) =
            page_offers(&fake, PROJECT, &format!("member_status={status}"), 40).await;
        assert_eq!(sizes, [40, 40, 20], "{status}");
        assert_eq!(ids, by_status[status], "{status}");
    }
    assert_eq!(
        fake.state
            .shared_queries()
            .iter()
            .map(|q| q.member_status.as_deref().unwrap())
            .collect::<Vec<_>>(),
        [STATUSES[0]; 3]
            .into_iter()
            .chain([STATUSES[1]; 3])
            .chain([STATUSES[2]; 3])
            .collect::<Vec<_>>()
    );

    // Another project sees none of them; offers to it are its own.
    let (status, body, _) = list_offers(&fake, Some(OTHER_PROJECT), "", Some(SK)).await;
    assert_eq!((status, image_ids(&body).len()), (200, 0), "{body}");
    let (id, name, owner, _) = offer(1_000);
    fake.state
        .offer_image(OTHER_PROJECT, &id, &name, &owner, "pending");
    let (status, body, _) = list_offers(&fake, Some(OTHER_PROJECT), "", Some(SK)).await;
    assert_eq!(
        (status, image_ids(&body)),
        (200, vec![id.clone()]),
        "{body}"
    );
    let (ids, _) = page_offers(&fake, PROJECT, "member_status=pending", 1000).await;
    assert_eq!(
        ids, by_status["pending"],
        "the other project's offer leaked"
    );

    // Status changes, replacement and withdrawal show at once.
    let moved = by_status["pending"][0].clone();
    assert!(fake.state.set_offer_status(PROJECT, &moved, "accepted"));
    assert!(!fake.state.set_offer_status(PROJECT, &id, "accepted"));
    let (ids, _) = page_offers(&fake, PROJECT, "member_status=pending", 1000).await;
    assert!(!ids.contains(&moved));
    let (ids, _) = page_offers(&fake, PROJECT, "member_status=accepted", 1000).await;
    assert!(ids.contains(&moved));
    fake.state
        .offer_image(PROJECT, &moved, "renamed", &"e".repeat(32), "rejected");
    let (_, body, _) = list_offers(&fake, Some(PROJECT), "member_status=rejected", Some(SK)).await;
    let image = body["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == moved.as_str())
        .unwrap_or_else(|| panic!("{moved} not rejected: {body}"));
    assert_eq!(
        (&image["name"], &image["owner"]),
        (&json!("renamed"), &json!("e".repeat(32)))
    );
    assert!(fake.state.withdraw_offer(PROJECT, &moved));
    assert!(!fake.state.withdraw_offer(PROJECT, &moved));
    let (ids, _) = page_offers(&fake, PROJECT, "", 1000).await;
    assert_eq!(ids.len(), 299);
    assert!(!ids.contains(&moved));

    // Another visibility lists no offers; the private listing is the project's own.
    let url = format!(
        "{}/v2/cloudimages?__imagetype=shared&visibility=public",
        fake.endpoint()
    );
    let now = time::OffsetDateTime::now_utc();
    let (status, body, _) = signed_get(&url, Some(SK), now, &[("x-project-id", PROJECT)]).await;
    assert_eq!((status, image_ids(&body).len()), (200, 0), "{body}");
    fake.state.add_image(PROJECT, IMG, "golden-ubuntu-22.04");
    let url = format!("{}/v2/cloudimages?__imagetype=private", fake.endpoint());
    let (status, body, _) = signed_get(&url, Some(SK), now, &[("x-project-id", PROJECT)]).await;
    assert_eq!(
        (status, image_ids(&body)),
        (200, vec![IMG.to_string()]),
        "{body}"
    );
    assert_eq!(body["images"][0]["owner"], PROJECT);
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fake_refuses_bad_offer_listings() {
    let fake = start_fake().await;
    let ids: Vec<String> = (0..5)
        .map(|i| {
            let (id, name, owner, _) = offer(i);
            fake.state
                .offer_image(PROJECT, &id, &name, &owner, "accepted");
            id
        })
        .collect();
    for (what, query) in [
        ("limit 0", "limit=0".to_string()),
        ("limit 1001", "limit=1001".into()),
        ("limit not a number", "limit=ten".into()),
        ("unknown marker", format!("marker={}", offer(99).0)),
        ("another project's image", format!("marker={IMG}")),
        ("unknown member status", "member_status=shared".into()),
    ] {
        let (status, body, rid) = list_offers(&fake, Some(PROJECT), &query, Some(SK)).await;
        assert_eq!(status, 400, "{what}: {body}");
        assert_eq!(body["error"]["code"], "IMG.0001", "{what}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}: {body}"
        );
        assert_eq!(rid.map(|r| r.len()), Some(32), "{what}");
    }
    // The limits themselves are fine, and a known marker of another status too.
    for limit in [1, 1000] {
        let (status, body, _) =
            list_offers(&fake, Some(PROJECT), &format!("limit={limit}"), Some(SK)).await;
        assert_eq!(
            (status, image_ids(&body).len()),
            (200, limit.min(5)),
            "{body}"
        );
    }
    let mut sorted = ids.clone();
    sorted.sort();
    fake.state.set_offer_status(PROJECT, &sorted[1], "rejected");
    let query = format!("member_status=accepted&marker={}", sorted[1]);
    let (status, body, _) = list_offers(&fake, Some(PROJECT), &query, Some(SK)).await;
    assert_eq!(
        (status, image_ids(&body)),
        (200, sorted[2..].to_vec()),
        "{body}"
    );

    // Without X-Project-Id: IMS's 400 once the signature is good.
    let (status, body, _) = list_offers(&fake, None, "", Some(SK)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "IMG.0001", "{body}");
    assert_eq!(fake.state.shared_queries().last().unwrap().project_id, None);

    // Unsigned, wrongly signed: the gateway's 401, with or without the project.
    for (what, project, sk) in [
        ("unsigned", Some(PROJECT), None),
        ("unsigned, no project", None, None),
        ("wrong secret key", Some(PROJECT), Some("nope")),
    ] {
        let (status, body, rid) = list_offers(&fake, project, "", sk).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(body["error_code"], "APIGW.0301", "{what}: {body}");
        assert!(rid.is_some(), "{what}");
    }
    assert_eq!(fake.state.rejected_signatures(), 3);
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fake_injects_faults_into_offer_listings_only() {
    let fake = start_fake().await;
    let mut ids: Vec<String> = (0..5)
        .map(|i| {
            let (id, name, owner, _) = offer(i);
            fake.state
                .offer_image(PROJECT, &id, &name, &owner, "pending");
            id
        })
        .collect();
    ids.sort();
    fake.state.add_image(PROJECT, IMG, "golden-ubuntu-22.04");
    fake.state.put_member(
        PROJECT,
        member(
            IMG, MEMBER, "project", "accepted", SHARED_AT, SHARED_AT, None,
        ),
    );
    let q = "member_status=pending&limit=2";
    let now = time::OffsetDateTime::now_utc();
    let own = format!("{}/v2/cloudimages?__imagetype=private", fake.endpoint());
    let members = format!("{}/v1/{PROJECT}/cloudimages/{IMG}/members", fake.endpoint());

    // A status: IMS's error format, for this project's offers and nothing else.
    fake.state
        .set_shared_fault(PROJECT, Some(Fault::Status(503)));
    let (status, body, rid) = list_offers(&fake, Some(PROJECT), q, Some(SK)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("IMG.0999")),
        "{body}"
    );
    assert!(rid.is_some());
    let with_project = [("x-project-id", PROJECT)];
    assert_eq!(
        signed_get(&own, Some(SK), now, &with_project).await.0,
        200,
        "own images"
    );
    assert_eq!(
        get(&members, Some(SK), now, None).await.0,
        200,
        "member list"
    );
    assert_eq!(
        list_offers(&fake, Some(OTHER_PROJECT), q, Some(SK)).await.0,
        200
    );
    // The project's other faults do not reach its offers.
    fake.state.set_shared_fault(PROJECT, None);
    fake.state.set_fault(PROJECT, Some(Fault::Status(500)));
    fake.state.set_cts_fault(PROJECT, Some(Fault::Status(500)));
    assert_eq!(list_offers(&fake, Some(PROJECT), q, Some(SK)).await.0, 200);
    fake.state.set_fault(PROJECT, None);
    fake.state.set_cts_fault(PROJECT, None);

    // A 200 without the list, one that is not JSON, and one too large.
    fake.state
        .set_shared_fault(PROJECT, Some(Fault::MissingList));
    let (status, body, _) = list_offers(&fake, Some(PROJECT), q, Some(SK)).await;
    assert_eq!((status, body), (200, json!({})));
    fake.state
        .set_shared_fault(PROJECT, Some(Fault::BrokenBody));
    let (status, body, _) = list_offers(&fake, Some(PROJECT), q, Some(SK)).await;
    assert_eq!(
        (status, body),
        (200, Value::Null),
        "a body that is not JSON"
    );
    fake.state
        .set_shared_fault(PROJECT, Some(Fault::Oversized(100_000)));
    let (status, body, _) = list_offers(&fake, Some(PROJECT), q, Some(SK)).await;
    assert_eq!((status, &body["images"]), (200, &json!([])));
    assert!(body["padding"].as_str().unwrap().len() >= 100_000);

    // Throttled, then answers no honest server gives, in order.
    fake.state.set_shared_fault(PROJECT, Some(Fault::Throttle));
    let (status, body, _) = list_offers(&fake, Some(PROJECT), q, Some(SK)).await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (429, Some("APIGW.0308"))
    );
    fake.state.set_shared_fault(
        PROJECT,
        Some(Fault::Script(vec![
            Canned::ok(r#"{"images": "none"}"#),
            Canned::ok(r#"{"images": [{"id": 1}]}"#),
        ])),
    );
    let answers = [
        list_offers(&fake, Some(PROJECT), q, Some(SK)).await.1,
        list_offers(&fake, Some(PROJECT), q, Some(SK)).await.1,
        list_offers(&fake, Some(PROJECT), q, Some(SK)).await.1,
    ];
    assert_eq!(
        answers,
        [
            json!({"images": "none"}),
            json!({"images": [{"id": 1}]}),
            json!({"images": [{"id": 1}]})
        ]
    );
    // A script checks the signature first.
    assert_eq!(list_offers(&fake, Some(PROJECT), q, None).await.0, 401);

    // The second page fails; the first is fine.
    fake.state
        .set_shared_fault(PROJECT, Some(Fault::FailPage(1)));
    let (status, body, _) = list_offers(&fake, Some(PROJECT), q, Some(SK)).await;
    assert_eq!(
        (status, image_ids(&body)),
        (200, ids[..2].to_vec()),
        "{body}"
    );
    let next = format!("{q}&marker={}", ids[1]);
    let (status, body, _) = list_offers(&fake, Some(PROJECT), &next, Some(SK)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (500, Some("IMG.0999")),
        "{body}"
    );
    let next = format!("{q}&marker={}", ids[3]);
    assert_eq!(
        list_offers(&fake, Some(PROJECT), &next, Some(SK)).await.0,
        200
    );

    // A flood: full pages of new images after each last ID, for ever.
    fake.state.set_shared_fault(PROJECT, Some(Fault::Flood(50)));
    let mut seen = std::collections::BTreeSet::new();
    let mut query = q.to_string();
    for _ in 0..3 {
        let (status, body, _) = list_offers(&fake, Some(PROJECT), &query, Some(SK)).await;
        let page = image_ids(&body);
        assert_eq!((status, page.len()), (200, 50), "{body}");
        assert!(page.windows(2).all(|w| w[0] < w[1]), "{page:?}");
        assert!(body["images"][0]["owner"]
            .as_str()
            .is_some_and(|o| o.len() == 32));
        let before = seen.len();
        seen.extend(page.iter().cloned());
        assert_eq!(seen.len(), before + 50, "a flood image repeats");
        query = format!("{q}&marker={}", page.last().unwrap());
    }

    // A hang: no answer within the client's patience.
    fake.state
        .set_shared_fault(PROJECT, Some(Fault::Delay(Duration::from_secs(2))));
    let hung = tokio::time::timeout(
        Duration::from_millis(300),
        list_offers(&fake, Some(PROJECT), q, Some(SK)),
    )
    .await;
    assert!(
        hung.is_err(),
        "a delayed listing answered at once: {hung:?}"
    );

    // A transient failure that clears itself.
    fake.state.set_shared_fault(
        PROJECT,
        Some(Fault::Flaky {
            failures: 2,
            status: 500,
            retry_after: Some(3),
        }),
    );
    let statuses = [
        list_offers(&fake, Some(PROJECT), q, Some(SK)).await.0,
        list_offers(&fake, Some(PROJECT), q, Some(SK)).await.0,
        list_offers(&fake, Some(PROJECT), q, Some(SK)).await.0,
    ];
    assert_eq!(statuses, [500, 500, 200]);
    let (status, body, _) = list_offers(&fake, Some(PROJECT), q, Some(SK)).await;
    assert_eq!(
        (status, image_ids(&body)),
        (200, ids[..2].to_vec()),
        "{body}"
    );
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_offers_images_from_trusted_and_untrusted_owners() {
    use fake_ims::demo;
    init_tls();
    let state = fake_ims::FakeState::default();
    let secret = demo::populate(&state, 10);
    state.add_account(AK, SK, None);
    let fake = FakeIms::start(state).await.unwrap();
    let (status, body, _) = list_offers(&fake, Some(demo::PROJECT_ID), "", Some(SK)).await;
    assert_eq!(status, 200, "{body}");
    let got: Vec<(String, String)> = body["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap().into(),
                i["owner"].as_str().unwrap().into(),
            )
        })
        .collect();
    let mut want: Vec<(String, String)> = demo::OFFERS
        .iter()
        .map(|(id, _, owner, _)| (id.to_string(), owner.to_string()))
        .collect();
    want.sort();
    assert_eq!(got, want);
    let of = |owner: &str, status: &str| {
        demo::OFFERS
            .iter()
            .filter(|o| o.2 == owner && o.3 == status)
            .count()
    };
    assert_eq!(of(demo::DEMO_TRUSTED_OWNER, "accepted"), 1);
    assert_eq!(of(demo::DEMO_TRUSTED_OWNER, "pending"), 1);
    assert_eq!(of(demo::DEMO_UNTRUSTED_OWNER, "pending"), 1);
    assert_eq!(of(demo::DEMO_REJECTED_OWNER, "rejected"), 1);
    let (status, body, _) = list_offers(
        &fake,
        Some(demo::PROJECT_ID),
        "member_status=rejected",
        Some(SK),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["images"][0]["owner"], demo::DEMO_REJECTED_OWNER);
    let yaml = demo::config_yaml(&fake.endpoint(), &secret, Duration::from_secs(15));
    assert!(
        yaml.contains(&format!(
            "incoming:\n  interval: 15s\n  trusted_owners: [{}]\n",
            demo::DEMO_TRUSTED_OWNER
        )),
        "{yaml}"
    );
    fake.stop().await;
}
