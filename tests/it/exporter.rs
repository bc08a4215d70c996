//! End-to-end behaviour of the real binary against the fake IMS on loopback.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use crate::support::*;
use ims_exporter::fake_ims::{member, Fault};
use ims_exporter::timestamp::parse_timestamp;

const IMG_A: &str = "d164b5df-1bc3-4c3f-893e-3e471fd16e64";
const IMG_B: &str = "370befec-a369-475e-a224-44a45927a8fe";
const ORG: &str = "ou-qdjrky7i07higfa4f6reqv9etybmp4ng";
const ORG_URN: &str = "organizations::6c031a41eefc480bb60f20c003891fcd:ou:o-z5142zmm6p5cumsxralfljeb3qrwqamd/ou-qdjrky7i07higfa4f6reqv9etybmp4ng";

/// Image A: every member type and status, an organization with a URN, one bad timestamp.
/// Image B: 2,500 members, three pages of 1,000.
async fn fake_with_fleet() -> Fleet {
    let fleet = Fleet::new().await;
    let s = &fleet.fake.state;
    for (id, kind, status, created, updated, urn) in [
        (
            "edc89b490d7d4392898e19b2deb34797",
            "project",
            "accepted",
            "2023-08-23T04:07:52Z",
            "2023-08-24T04:07:52Z",
            None,
        ),
        (
            "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
            "project",
            "pending",
            "2024-01-02T03:04:05.123Z",
            "2024-01-02T03:04:05",
            None,
        ),
        (
            "5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d",
            "domain",
            "rejected",
            "2024-05-06T07:08:09+08:00",
            "not a time",
            None,
        ),
        (
            ORG,
            "organization",
            "accepted",
            "2023-08-23T04:09:12Z",
            "2023-08-23T04:09:12Z",
            Some(ORG_URN),
        ),
    ] {
        s.put_member(
            PROJECT,
            member(IMG_A, id, kind, status, created, updated, urn),
        );
    }
    let statuses = ["accepted", "pending", "rejected"];
    for i in 0..2500 {
        let kind = if i % 7 == 0 { "domain" } else { "project" };
        s.put_member(
            PROJECT,
            member(
                IMG_B,
                &format!("{i:032x}"),
                kind,
                statuses[i % 3],
                "2025-01-01T00:00:00Z",
                "2025-06-01T00:00:00Z",
                None,
            ),
        );
    }
    fleet
}

fn image(id: &str) -> [(&'static str, &str); 3] {
    [
        ("region", REGION),
        ("project_id", PROJECT),
        ("image_id", id),
    ]
}

fn with<'a>(base: [(&'a str, &'a str); 3], more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut v = base.to_vec();
    v.extend_from_slice(more);
    v
}

/// Starts the exporter on the fleet's config for image A and asserts that its first
/// poll succeeded, i.e. the fake accepted how the requests were signed.
async fn assert_first_poll_succeeds(fleet: Fleet) {
    let fleet = fleet.images(&[IMG_A]);
    let exporter = fleet.start(&[]).await;
    let s = exporter.scrape_samples().await;
    assert_eq!(
        value(&s, "ims_image_poll_success", &image(IMG_A)),
        Some(1.0),
        "{}",
        exporter.logs()
    );
    drop(exporter);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_equal_what_the_fake_holds() {
    let fleet = fake_with_fleet()
        .await
        .images(&[IMG_A, IMG_B])
        .config("page_size: 1000");
    let fake = &fleet.fake;
    let exporter = fleet.start(&[]).await;
    let samples = exporter.scrape_samples().await;

    for img in [IMG_A, IMG_B] {
        let members = fake.state.members(PROJECT, img);
        // Counts by type and status equal the fake's.
        let mut expected: BTreeMap<(String, String), f64> = BTreeMap::new();
        for m in &members {
            *expected
                .entry((m.member_type.clone().unwrap(), m.status.clone().unwrap()))
                .or_default() += 1.0;
        }
        for ((kind, status), n) in &expected {
            assert_eq!(
                value(
                    &samples,
                    "ims_image_members",
                    &with(image(img), &[("member_type", kind), ("status", status)])
                ),
                Some(*n),
                "{img} {kind} {status}"
            );
        }
        let total: f64 = find(&samples, "ims_image_members", &image(img))
            .iter()
            .map(|s| s.value)
            .sum();
        assert_eq!(
            total,
            members.len() as f64,
            "{img}: every member counted once"
        );

        // One info series per member, with its type, status and URN.
        let info: BTreeSet<(String, String, String, String)> =
            find(&samples, "ims_image_member_info", &image(img))
                .iter()
                .map(|s| {
                    (
                        s.label("member_id").into(),
                        s.label("member_type").into(),
                        s.label("status").into(),
                        s.label("urn").into(),
                    )
                })
                .collect();
        let want: BTreeSet<_> = members
            .iter()
            .map(|m| {
                (
                    m.member_id.clone(),
                    m.member_type.clone().unwrap(),
                    m.status.clone().unwrap(),
                    m.urn.clone().unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(info, want, "{img}: member info");

        // Timestamps as the API gave them; an unparseable one is absent, the member stays.
        let per_member: std::collections::HashMap<(&str, &str), f64> = samples
            .iter()
            .filter(|s| s.label("image_id") == img && !s.label("member_id").is_empty())
            .map(|s| ((s.name.as_str(), s.label("member_id")), s.value))
            .collect();
        for m in &members {
            let get =
                |family: &'static str| per_member.get(&(family, m.member_id.as_str())).copied();
            let created = get("ims_image_member_created_timestamp_seconds");
            assert_eq!(
                created,
                parse_timestamp(m.created_at.as_deref().unwrap()),
                "created_at of {}",
                m.member_id
            );
            let updated = get("ims_image_member_updated_timestamp_seconds");
            assert_eq!(
                updated,
                parse_timestamp(m.updated_at.as_deref().unwrap()),
                "updated_at of {}",
                m.member_id
            );
            let age = get("ims_image_member_update_age_seconds");
            assert_eq!(age.is_some(), updated.is_some());
            if let (Some(age), Some(updated)) = (age, updated) {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs_f64();
                assert!(
                    (now - updated - age).abs() < 60.0,
                    "age of {} is now - updated_at",
                    m.member_id
                );
            }
        }
        assert_eq!(
            value(&samples, "ims_image_poll_success", &image(img)),
            Some(1.0)
        );
        assert!(
            value(
                &samples,
                "ims_image_last_success_timestamp_seconds",
                &image(img)
            )
            .unwrap()
                > 1.7e9
        );
    }
    // The organization's URN and the lenient timestamp forms.
    assert_eq!(
        value(
            &samples,
            "ims_image_member_created_timestamp_seconds",
            &with(image(IMG_A), &[("member_id", ORG)])
        ),
        Some(1_692_763_752.0)
    );
    assert_eq!(
        value(
            &samples,
            "ims_image_member_created_timestamp_seconds",
            &with(
                image(IMG_A),
                &[("member_id", "5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d")]
            )
        ),
        Some(1_714_950_489.0)
    );
    assert_eq!(value(&samples, "ims_images_monitored", &[]), Some(2.0));
    assert!(value(&samples, "ims_poll_duration_seconds", &[]).is_some());
    // Three pages for B, one for A, on every cycle.
    let list_calls = value(
        &samples,
        "ims_api_requests_total",
        &[("operation", "list_members"), ("code", "200")],
    )
    .unwrap();
    assert!(
        list_calls >= 4.0 && list_calls % 4.0 == 0.0,
        "list calls {list_calls}"
    );
    assert_eq!(
        value(
            &samples,
            "ims_exporter_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    assert!(
        exporter.logs().contains("unparseable member timestamps"),
        "{}",
        exporter.logs()
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_image_keeps_its_last_good_data() {
    let fleet = fake_with_fleet()
        .await
        .images(&[IMG_A, IMG_B])
        .config("page_size: 1000");
    let fake = &fleet.fake;
    let exporter = fleet.start(&[]).await;
    let before = exporter.scrape_samples().await;

    fake.state.set_fault(IMG_A, Some(Fault::Status(503)));
    // The second page of B fails: the first page must not replace the full list.
    fake.state.set_fault(IMG_B, Some(Fault::FailPage(1)));
    // Changes made while failing must not show up either.
    fake.state
        .remove_member(PROJECT, IMG_B, &format!("{:032x}", 1));

    let after = wait_for("both images to report a failed poll", async || {
        let s = exporter.scrape_samples().await;
        let failed = [IMG_A, IMG_B]
            .iter()
            .all(|i| value(&s, "ims_image_poll_success", &image(i)) == Some(0.0));
        failed.then_some(s)
    })
    .await;
    for img in [IMG_A, IMG_B] {
        // (A poll may have succeeded between `before` and the faults; the fake's data did
        // not change until then, so the members are the same either way.)
        for family in [
            "ims_image_members",
            "ims_image_member_info",
            "ims_image_member_created_timestamp_seconds",
        ] {
            let b: Vec<_> = find(&before, family, &image(img));
            let a: Vec<_> = find(&after, family, &image(img));
            assert_eq!(a, b, "{family} of {img} must stay as last polled");
        }
    }
    // While failing, the time of the last good poll stays where it was.
    let last_good = value(
        &after,
        "ims_image_last_success_timestamp_seconds",
        &image(IMG_A),
    );
    let polls = fake.state.requests();
    wait_for("more failed polls", async || {
        (fake.state.requests() >= polls + 3).then_some(())
    })
    .await;
    let later = exporter.scrape_samples().await;
    assert_eq!(
        value(
            &later,
            "ims_image_last_success_timestamp_seconds",
            &image(IMG_A)
        ),
        last_good
    );
    assert!(
        value(
            &after,
            "ims_image_poll_errors_total",
            &with(image(IMG_A), &[("reason", "http_5xx")])
        )
        .unwrap()
            >= 1.0
    );
    assert!(
        value(
            &after,
            "ims_image_poll_errors_total",
            &with(image(IMG_B), &[("reason", "http_5xx")])
        )
        .unwrap()
            >= 1.0
    );
    assert!(
        value(
            &after,
            "ims_api_requests_total",
            &[("operation", "list_members"), ("code", "503")]
        )
        .unwrap()
            >= 1.0
    );
    // The log names the image, the reason and the API's request id.
    let line = exporter
        .log_lines()
        .into_iter()
        .find(|l| l.contains("poll failed") && l.contains(IMG_A))
        .expect("a log line for the failed poll");
    assert!(
        line.contains("reason=http_5xx") && line.contains("IMG.0999"),
        "{line}"
    );
    let rid = line
        .split_whitespace()
        .find_map(|f| f.strip_prefix("request_id="))
        .unwrap();
    assert_eq!(rid.len(), 32, "request id in {line}");

    // Recovery replaces the data with the current list.
    fake.state.set_fault(IMG_A, None);
    fake.state.set_fault(IMG_B, None);
    wait_for("recovery", async || {
        let s = exporter.scrape_samples().await;
        (value(&s, "ims_image_poll_success", &image(IMG_B)) == Some(1.0)
            && find(&s, "ims_image_member_info", &image(IMG_B)).len() == 2499)
            .then_some(())
    })
    .await;
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_secret_key_fails_and_is_reported() {
    let fleet = fake_with_fleet()
        .await
        .images(&[IMG_A])
        .credentials(&format!(
            "access_key_id: {AK}\nsecret_access_key: WRONG-SECRET-KEY"
        ));
    let fake = &fleet.fake;
    let exporter = fleet.start(&[]).await;
    let s = exporter.scrape_samples().await;
    assert_eq!(
        value(&s, "ims_image_poll_success", &image(IMG_A)),
        Some(0.0)
    );
    assert!(
        value(
            &s,
            "ims_image_poll_errors_total",
            &with(image(IMG_A), &[("reason", "auth")])
        )
        .unwrap()
            >= 1.0
    );
    assert!(find(&s, "ims_image_member_info", &[]).is_empty());
    assert!(fake.state.rejected_signatures() >= 1);
    // The log says what no metric does: the API's error code.
    let logs = exporter.logs();
    assert!(logs.contains("APIGW.0301"), "{logs}");
    assert!(
        !logs.contains("WRONG-SECRET-KEY"),
        "the secret key must never be logged"
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn temporary_credentials_sign_the_security_token() {
    let fleet = fake_with_fleet().await;
    fleet
        .fake
        .state
        .add_account("TEMPAK", "TEMPSK", Some("the-token"));
    let token = fleet.dir.path().join("token");
    std::fs::write(&token, "the-token\n").unwrap();
    let fleet = fleet.credentials(&format!(
        "access_key_id: TEMPAK\nsecurity_token_file: {}\nsecret_access_key: TEMPSK",
        token.display()
    ));
    assert_first_poll_succeeds(fleet).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_come_from_the_sdk_environment_variables() {
    let fleet = fake_with_fleet()
        .await
        .no_credentials()
        .env("HUAWEICLOUD_SDK_AK", AK)
        .env("HUAWEICLOUD_SDK_SK", SK);
    assert_first_poll_succeeds(fleet).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_waits_for_the_first_cycle() {
    let fleet = fake_with_fleet().await.images(&[IMG_A]);
    let fake = &fleet.fake;
    fake.state
        .set_fault(IMG_A, Some(Fault::Delay(std::time::Duration::from_secs(3))));
    let exporter = fleet.start_unready(&[]).await;
    assert_eq!(exporter.get("/-/ready").await.status(), 503);
    assert_eq!(exporter.get("/-/healthy").await.status(), 200);
    // Scrapes answer while the poll is in flight; they never wait for the API.
    let s = exporter.scrape_samples().await;
    assert_eq!(value(&s, "ims_images_monitored", &[]), Some(1.0));
    assert!(find(&s, "ims_image_poll_success", &[]).is_empty());
    exporter.wait_ready().await;
    let landing = exporter.get("/").await.text().await.unwrap();
    assert!(landing.contains("href=\"/metrics\""), "{landing}");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn content_negotiation_and_gzip() {
    let fleet = fake_with_fleet().await.images(&[IMG_A]);
    let exporter = fleet.start(&["--web.telemetry-path", "/m"]).await;
    let client = reqwest::Client::new();

    let plain = client.get(exporter.url("/m")).send().await.unwrap();
    assert_eq!(
        plain.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8; escaping=underscores"
    );
    let plain = plain.text().await.unwrap();
    assert!(plain.contains("# TYPE ims_api_requests_total counter") && !plain.contains("# EOF"));

    let om = client
        .get(exporter.url("/m"))
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        om.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores"
    );
    let om = om.text().await.unwrap();
    assert!(om.ends_with("# EOF\n") && om.contains("# TYPE ims_api_requests counter"));

    let gz = client
        .get(exporter.url("/m"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(gz.headers()["content-encoding"], "gzip");
    let bytes = gz.bytes().await.unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_string(&mut text)
        .unwrap();
    assert!(
        text.contains("ims_image_member_info{"),
        "gzip body decodes to the exposition"
    );

    assert_eq!(
        exporter.get("/metrics").await.status(),
        404,
        "only the configured path serves metrics"
    );
    let post = client.post(exporter.url("/m")).send().await.unwrap();
    assert_eq!(post.status(), 405);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_exits_cleanly() {
    let fleet = fake_with_fleet().await.images(&[IMG_A]);
    let exporter = fleet.start(&[]).await;
    let status = exporter.terminate().await;
    assert_eq!(status.code(), Some(0));
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_bodies_and_timeouts_fail_only_that_image() {
    let fleet = fake_with_fleet()
        .await
        .images(&[IMG_A, IMG_B])
        // A short timeout so the delayed image times out quickly.
        .config("page_size: 1000\nrequest_timeout: 300ms");
    let fake = &fleet.fake;
    let exporter = fleet.start(&["--log.format", "json"]).await;
    fake.state.set_fault(IMG_A, Some(Fault::BrokenBody));
    fake.state
        .set_fault(IMG_B, Some(Fault::Delay(std::time::Duration::from_secs(2))));
    let s = wait_for("decode and timeout failures", async || {
        let s = exporter.scrape_samples().await;
        let a = value(
            &s,
            "ims_image_poll_errors_total",
            &with(image(IMG_A), &[("reason", "decode")]),
        );
        let b = value(
            &s,
            "ims_image_poll_errors_total",
            &with(image(IMG_B), &[("reason", "timeout")]),
        );
        (a? >= 1.0 && b? >= 1.0).then_some(s)
    })
    .await;
    // Both keep their last good members.
    assert_eq!(find(&s, "ims_image_member_info", &image(IMG_A)).len(), 4);
    assert_eq!(find(&s, "ims_image_member_info", &image(IMG_B)).len(), 2500);
    assert!(
        value(
            &s,
            "ims_api_requests_total",
            &[("operation", "list_members"), ("code", "timeout")]
        )
        .unwrap()
            >= 1.0
    );
    // JSON logs: one object per line, with the reason and the decode error's location.
    let line = exporter
        .log_lines()
        .into_iter()
        .find(|l| l.contains("\"reason\":\"decode\""))
        .expect("a JSON log line for the decode failure");
    let v: serde_json::Value = serde_json::from_str(&line).expect("log line is JSON");
    assert_eq!(v["image_id"], IMG_A);
    assert_eq!(v["level"], "WARN");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("cannot decode response"),
        "{line}"
    );
    fleet.stop().await;
}
