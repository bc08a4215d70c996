//! The fake IMS itself refuses what the real API gateway refuses, so tests that pass
//! against it mean something: unsigned, stale, wrongly signed and tokenless requests.

use crate::support::*;
use ims_exporter::auth::credentials::Secret;
use ims_exporter::auth::signer::{self, RequestParts};
use ims_exporter::fake_ims::{member, Fault};

const IMG: &str = "d164b5df-1bc3-4c3f-893e-3e471fd16e64";

/// Sends a GET signed with `sk` (or unsigned) and a chosen X-Sdk-Date.
async fn get(
    url: &str,
    sk: Option<&str>,
    date: time::OffsetDateTime,
    token: Option<&str>,
) -> (u16, serde_json::Value, Option<String>) {
    let parsed = reqwest::Url::parse(url).unwrap();
    let date = date.format(signer::DATE_FORMAT).unwrap();
    let host = format!("{}:{}", parsed.host_str().unwrap(), parsed.port().unwrap());
    let mut headers = vec![
        ("host".to_string(), host),
        ("x-sdk-date".to_string(), date.clone()),
    ];
    if let Some(t) = token {
        headers.push(("x-security-token".into(), t.into()));
    }
    let query: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    let mut req = reqwest::Client::new().get(url).header("x-sdk-date", &date);
    if let Some(t) = token {
        req = req.header("x-security-token", t);
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
