//! Share-change events (docs/events.md): the real binary reads the fake's Cloud Trace
//! Service trace list and re-polls what member traces name, at once, saying who made
//! the change. `poll_interval` is an hour in every test here, so anything seen within a
//! test's deadline was seen because of a trace.

use crate::support::*;
use ims_exporter::fake_ims::{member_trace, Fault};
use serde_json::Value;

const IMG_A: &str = "d164b5df-1bc3-4c3f-893e-3e471fd16e64";
const IMG_B: &str = "370befec-a369-475e-a224-44a45927a8fe";
/// An image of the project the config does not list.
const IMG_C: &str = "5c1e7a3b-8d2f-4e6a-9b0c-1d2e3f4a5b6c";
const ALICE: &str = "alice";
const ALICE_IP: &str = "192.0.2.10";

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// Images A and B, shared with [`MEMBER`], polled hourly; traces read every second
/// from the fake, each read re-covering `lookback`.
async fn fleet(lookback: &str) -> Fleet {
    let fleet = Fleet::new()
        .await
        .shared(&[IMG_A, IMG_B])
        .images(&[IMG_A, IMG_B]);
    let endpoint = fleet.fake.endpoint();
    fleet
        .config(&format!(
            "poll_interval: 1h\nevents:\n  cts:\n    interval: 1s\n    lookback: {lookback}"
        ))
        .target_keys(&format!("cts_endpoint: {endpoint}"))
}

/// A member trace by alice for `image`, made now and recorded a second later.
fn trace(name: &str, image: &str, member: &str) -> Value {
    let now = now_ms();
    member_trace(name, image, member, ALICE, ALICE_IP, now, now + 1000)
}

/// [`trace`] recorded at once: what a read without lookback can see.
fn recorded_trace(name: &str, image: &str, member: &str) -> Value {
    let now = now_ms();
    member_trace(name, image, member, ALICE, ALICE_IP, now, now)
}

async fn metric(exporter: &Exporter, name: &str, labels: &[(&str, &str)]) -> f64 {
    value(&exporter.scrape_samples().await, name, labels).unwrap_or(0.0)
}

/// Waits until `image` is exported shared with `member`.
async fn wait_shared(exporter: &Exporter, image: &str, member: &str) {
    wait_for(&format!("{member} on {image}"), async || {
        let samples = exporter.scrape_samples().await;
        (!find(
            &samples,
            "ims_image_member_info",
            &[("image_id", image), ("member_id", member)],
        )
        .is_empty())
        .then_some(())
    })
    .await
}

/// Waits until the exporter has read `n` member traces in all.
async fn wait_traces(exporter: &Exporter, n: f64) {
    wait_for(&format!("{n} member traces read"), async || {
        let samples = exporter.scrape_samples().await;
        let read: f64 = find(&samples, "ims_cts_traces_total", &[])
            .iter()
            .map(|s| s.value)
            .sum();
        (read >= n).then_some(())
    })
    .await
}

/// Waits until the fake has answered `n` more trace reads than `before`.
async fn wait_reads(fleet: &Fleet, before: u64, n: u64) {
    wait_for(&format!("{n} more trace reads"), async || {
        (fleet.fake.state.cts_requests() >= before + n).then_some(())
    })
    .await
}

/// The `/api/v1/changes` row of `member`'s change.
async fn change_row(exporter: &Exporter, member: &str) -> Value {
    let changes: Value = exporter
        .get("/api/v1/changes")
        .await
        .json()
        .await
        .expect("JSON");
    changes["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .find(|c| c["member_id"] == member)
        .unwrap_or_else(|| panic!("a row for {member}"))
        .clone()
}

/// Waits until the target's last trace read succeeded (`ok`) or failed.
async fn wait_read(exporter: &Exporter, ok: bool) {
    let want = if ok { 1.0 } else { 0.0 };
    wait_for(&format!("a read with success {want}"), async || {
        (metric(exporter, "ims_cts_read_success", &[("project_id", PROJECT)]).await == want)
            .then_some(())
    })
    .await
}

fn shared_in(exporter_samples: &[Sample], image: &str, member: &str) -> bool {
    !find(
        exporter_samples,
        "ims_image_member_info",
        &[("image_id", image), ("member_id", member)],
    )
    .is_empty()
}

#[tokio::test]
async fn a_trace_repolls_only_the_image_it_names_and_the_change_says_who_made_it() {
    let fleet = fleet("5m").await;
    let fake = &fleet.fake;
    let exporter = fleet.start(&[]).await;
    let (x, y) = (member_id(1), member_id(2));
    // Shared with both images, but only A's share is traced.
    share(fake, PROJECT, IMG_A, &x, "pending");
    share(fake, PROJECT, IMG_B, &y, "pending");
    let t = trace("addMember", IMG_A, &x);
    let trace_id = t["trace_id"].as_str().expect("trace_id").to_string();
    fake.state.add_trace(PROJECT, t);
    wait_shared(&exporter, IMG_A, &x).await;

    let samples = exporter.scrape_samples().await;
    assert!(
        !shared_in(&samples, IMG_B, &y),
        "B was re-polled without a trace"
    );
    let target = [("region", REGION), ("project_id", PROJECT)];
    assert_eq!(value(&samples, "ims_event_polls_total", &target), Some(1.0));
    assert_eq!(value(&samples, "ims_cts_read_success", &target), Some(1.0));
    assert_eq!(
        value(
            &samples,
            "ims_cts_traces_total",
            &[("trace_name", "addMember")]
        ),
        Some(1.0)
    );
    assert!(
        value(
            &samples,
            "ims_cts_last_read_success_timestamp_seconds",
            &target
        )
        .unwrap_or(0.0)
            > 0.0
    );
    assert_eq!(
        value(&samples, "ims_event_to_poll_seconds_count", &[]),
        Some(1.0)
    );
    let requests: f64 = find(
        &samples,
        "ims_api_requests_total",
        &[("operation", "list_traces")],
    )
    .iter()
    .map(|s| s.value)
    .sum();
    assert!(requests >= 1.0, "list_traces requests are counted");

    // Who made it: in the audit log line, the JSON API and the share browser.
    let line = wait_for("the audit line", async || {
        exporter
            .log_lines()
            .into_iter()
            .find(|l| l.contains("member_added") && l.contains(&x))
    })
    .await;
    for needle in [
        format!("trace_id={trace_id}"),
        format!("actor={ALICE}"),
        format!("source_ip={ALICE_IP}"),
    ] {
        assert!(line.contains(&needle), "{needle} not in {line}");
    }
    let row = change_row(&exporter, &x).await;
    assert_eq!(row["trace_id"], trace_id.as_str());
    assert_eq!(row["actor"], ALICE);
    assert_eq!(row["source_ip"], ALICE_IP);
    let page = exporter.get("/shares").await.text().await.expect("page");
    assert!(
        page.contains(ALICE) && page.contains(&trace_id),
        "the page says who"
    );

    // A change a scheduled poll finds names nobody: B's share, at the next cycle.
    fleet.rewrite(|c| c.config("poll_interval: 1s"));
    exporter.reload().await;
    wait_shared(&exporter, IMG_B, &y).await;
    let row = change_row(&exporter, &y).await;
    for field in ["trace_id", "actor", "source_ip"] {
        assert!(row[field].is_null(), "{field}: {}", row[field]);
    }
    drop(exporter);
    fleet.stop().await;
}

#[tokio::test]
async fn a_batch_body_naming_two_images_polls_both() {
    let fleet = fleet("5m").await;
    let fake = &fleet.fake;
    let exporter = fleet.start(&[]).await;
    let x = member_id(3);
    share(fake, PROJECT, IMG_A, &x, "pending");
    share(fake, PROJECT, IMG_B, &x, "pending");
    // The v1 batch call: no resource ID, both images in the request body.
    let mut t = trace("addMember", IMG_A, &x);
    t["resource_id"] = Value::Null;
    t["resource_name"] = Value::Null;
    t["request"] = Value::String(format!(
        r#"{{"images": ["{IMG_A}", "{IMG_B}"], "projects": ["{x}"]}}"#
    ));
    fake.state.add_trace(PROJECT, t);
    wait_shared(&exporter, IMG_A, &x).await;
    wait_shared(&exporter, IMG_B, &x).await;
    assert_eq!(
        metric(
            &exporter,
            "ims_event_polls_total",
            &[("project_id", PROJECT)]
        )
        .await,
        2.0
    );
    drop(exporter);
    fleet.stop().await;
}

#[tokio::test]
async fn an_unmonitored_image_costs_no_request_and_an_unidentifiable_trace_polls_every_image() {
    let fleet = fleet("5m").await;
    let fake = &fleet.fake;
    let exporter = fleet.start(&[]).await;
    let x = member_id(4);
    let polls_before = fake.state.requests();
    // An image the config does not list (and no discover:): read, counted, no poll.
    fake.state.add_trace(PROJECT, trace("addMember", IMG_C, &x));
    wait_traces(&exporter, 1.0).await;
    let reads = fake.state.cts_requests();
    wait_reads(&fleet, reads, 2).await;
    assert_eq!(
        fake.state.requests(),
        polls_before,
        "no IMS request for an unmonitored image"
    );
    assert_eq!(metric(&exporter, "ims_event_polls_total", &[]).await, 0.0);

    // A member trace that names no image: every image of the target, once.
    share(fake, PROJECT, IMG_A, &x, "pending");
    share(fake, PROJECT, IMG_B, &x, "pending");
    let mut t = trace("deleteMemeber", IMG_A, &x);
    for field in ["resource_id", "resource_name", "request"] {
        t[field] = Value::Null;
    }
    fake.state.add_trace(PROJECT, t);
    wait_shared(&exporter, IMG_A, &x).await;
    wait_shared(&exporter, IMG_B, &x).await;
    assert_eq!(metric(&exporter, "ims_event_polls_total", &[]).await, 2.0);
    assert_eq!(
        metric(
            &exporter,
            "ims_cts_traces_total",
            &[("trace_name", "deleteMember")]
        )
        .await,
        1.0
    );
    // Not a member trace: ignored.
    let mut other = trace("createImage", IMG_A, &x);
    other["trace_name"] = "createImage".into();
    fake.state.add_trace(PROJECT, other);
    let reads = fake.state.cts_requests();
    wait_reads(&fleet, reads, 2).await;
    assert_eq!(metric(&exporter, "ims_event_polls_total", &[]).await, 2.0);
    drop(exporter);
    fleet.stop().await;
}

#[tokio::test]
async fn a_late_trace_is_read_once_across_overlapping_windows() {
    let fleet = fleet("5m").await;
    let fake = &fleet.fake;
    let exporter = fleet.start(&[]).await;
    let x = member_id(5);
    share(fake, PROJECT, IMG_A, &x, "accepted");
    // Made a minute ago, recorded only now: windows that ended before now missed it.
    let now = now_ms();
    let t = member_trace("addMember", IMG_A, &x, ALICE, ALICE_IP, now - 60_000, now);
    fake.state.add_trace(PROJECT, t);
    wait_shared(&exporter, IMG_A, &x).await;
    // Every later read lists it again (it is inside their lookback): one poll only.
    let reads = fake.state.cts_requests();
    wait_reads(&fleet, reads, 3).await;
    assert_eq!(metric(&exporter, "ims_event_polls_total", &[]).await, 1.0);
    assert_eq!(metric(&exporter, "ims_cts_traces_total", &[]).await, 1.0);
    // The windows overlap by the lookback (5 minutes), each starting where the last ended.
    let queries = fake.state.cts_queries();
    let last = queries.last().expect("a query");
    let before = &queries[queries.len() - 2];
    assert_eq!(last.from, before.to.map(|t| t - 300_000), "{queries:?}");
    drop(exporter);
    fleet.stop().await;
}

#[tokio::test]
async fn a_trace_made_during_a_cts_outage_is_acted_on_after_it() {
    // No lookback: only the window that starts where the last good read ended covers it.
    let fleet = fleet("0s").await;
    let fake = &fleet.fake;
    let exporter = fleet.start(&[]).await;
    let target = [("project_id", PROJECT)];
    wait_read(&exporter, true).await;
    fake.state.set_cts_fault(PROJECT, Some(Fault::Status(500)));
    wait_read(&exporter, false).await;
    let x = member_id(6);
    share(fake, PROJECT, IMG_A, &x, "pending");
    fake.state
        .add_trace(PROJECT, recorded_trace("addMember", IMG_A, &x));
    let reads = fake.state.cts_requests();
    wait_reads(&fleet, reads, 2).await;
    assert!(!shared_in(&exporter.scrape_samples().await, IMG_A, &x));
    assert!(
        exporter.logs().contains("trace read failed"),
        "the outage is logged"
    );
    fake.state.set_cts_fault(PROJECT, None);
    wait_shared(&exporter, IMG_A, &x).await;
    assert_eq!(
        metric(&exporter, "ims_cts_read_success", &target).await,
        1.0
    );
    drop(exporter);
    fleet.stop().await;
}

#[tokio::test]
async fn a_restart_with_storage_reads_the_traces_of_its_downtime() {
    let fleet = fleet("0s").await;
    let fake = &fleet.fake;
    let state = fleet.dir.path().join("state");
    let args = ["--storage.path", state.to_str().expect("UTF-8 path")];
    let exporter = fleet.start(&args).await;
    let target = [("project_id", PROJECT)];
    wait_read(&exporter, true).await;
    assert!(exporter.terminate().await.success());
    let stopped = now_ms();

    // While it is down: a share and its trace.
    let x = member_id(7);
    share(fake, PROJECT, IMG_A, &x, "pending");
    fake.state
        .add_trace(PROJECT, recorded_trace("addMember", IMG_A, &x));
    let exporter = fleet.start(&args).await;
    wait_traces(&exporter, 1.0).await;
    // The first read after the restart started where the last one before it ended.
    let queries = fake.state.cts_queries();
    let first_after = queries
        .iter()
        .find(|q| q.to.is_some_and(|t| t > stopped))
        .expect("a read after the restart");
    assert!(
        first_after.from.is_some_and(|f| f <= stopped),
        "the window covers the downtime: {first_after:?} (stopped at {stopped})"
    );
    wait_for("the event poll", async || {
        (metric(&exporter, "ims_event_polls_total", &target).await == 1.0).then_some(())
    })
    .await;
    drop(exporter);
    fleet.stop().await;
}

#[tokio::test]
async fn a_pushed_trace_repolls_at_once_and_the_same_trace_pulled_later_does_not_again() {
    const TOKEN: &str = "push-token-0123456789abcdef";
    let fleet = fleet("5m").await;
    let token_file = fleet.dir.path().join("token");
    std::fs::write(&token_file, TOKEN).expect("token file");
    // Traces are read every second, but the fake lists none until the push is done.
    let fleet = fleet.config(&format!(
        "poll_interval: 1h\nevents:\n  cts:\n    interval: 1s\n    lookback: 5m\n  webhook:\n    token_file: {}",
        token_file.display()
    ));
    let fake = &fleet.fake;
    let exporter = fleet.start(&[]).await;
    let x = member_id(8);
    share(fake, PROJECT, IMG_A, &x, "pending");
    let t = recorded_trace("addMember", IMG_A, &x);
    // As FunctionGraph's CTS trigger sends it.
    init_tls();
    let answer = reqwest::Client::new()
        .post(exporter.url("/api/v1/events"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(serde_json::json!({ "cts": t }).to_string())
        .send()
        .await
        .expect("POST");
    assert!(answer.status().is_success(), "{}", answer.status());
    wait_shared(&exporter, IMG_A, &x).await;
    assert_eq!(metric(&exporter, "ims_event_polls_total", &[]).await, 1.0);
    assert_eq!(
        metric(
            &exporter,
            "ims_webhook_requests_total",
            &[("result", "accepted")]
        )
        .await,
        1.0
    );
    // CTS now lists the same trace: read, and not acted on twice.
    fake.state.add_trace(PROJECT, t);
    let reads = fake.state.cts_requests();
    wait_reads(&fleet, reads, 3).await;
    assert_eq!(metric(&exporter, "ims_event_polls_total", &[]).await, 1.0);
    assert_eq!(metric(&exporter, "ims_cts_traces_total", &[]).await, 1.0);
    drop(exporter);
    fleet.stop().await;
}

#[tokio::test]
async fn config_check_says_which_targets_read_traces() {
    let out = command()
        .args([
            "--config.check",
            "--config.file",
            "tests/data/config/ok/events.yaml",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run --config.check");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for line in [
        "events.cts: every 2s, lookback 5m",
        "target cn-north-4 1bed856811654c1cb661a6ca845ebc77: reads traces from https://cts.cn-north-4.example.org/",
        "target ap-southeast-1 0f1e2d3c4b5a69788796a5b4c3d2e1f0: reads no traces (cts: false)",
        "events.webhook: POST /api/v1/events",
    ] {
        assert!(text.contains(line), "{line:?} not in:\n{text}");
    }
    assert!(
        !text.contains("a-test-webhook-token"),
        "the token is never printed"
    );
}

#[tokio::test]
async fn each_shard_repolls_only_its_own_images() {
    let fleet = fleet("5m").await;
    let fake = &fleet.fake;
    let shards: Vec<Exporter> = {
        let mut started = Vec::new();
        for i in ["0", "1"] {
            started.push(
                fleet
                    .start(&["--shard.count", "2", "--shard.index", i])
                    .await,
            );
        }
        started
    };
    // Which shard owns which image: the one that exports it.
    let mut owner_of = std::collections::HashMap::new();
    for (i, shard) in shards.iter().enumerate() {
        for image in [IMG_A, IMG_B] {
            let s = shard.scrape_samples().await;
            if !find(&s, "ims_image_info", &[("image_id", image)]).is_empty() {
                owner_of.insert(image, i);
            }
        }
    }
    assert_eq!(owner_of.len(), 2, "each image has one shard: {owner_of:?}");
    let x = member_id(9);
    share(fake, PROJECT, IMG_A, &x, "pending");
    fake.state.add_trace(PROJECT, trace("addMember", IMG_A, &x));
    let mine = &shards[owner_of[IMG_A]];
    wait_shared(mine, IMG_A, &x).await;
    assert_eq!(metric(mine, "ims_event_polls_total", &[]).await, 1.0);
    // Both shards read the trace; the other one polls nothing for it.
    for shard in &shards {
        wait_traces(shard, 1.0).await;
    }
    let other = &shards[1 - owner_of[IMG_A]];
    assert_eq!(metric(other, "ims_event_polls_total", &[]).await, 0.0);
    drop(shards);
    fleet.stop().await;
}

#[tokio::test]
async fn a_report_from_the_state_says_who_made_each_change() {
    let fleet = fleet("5m").await;
    let fake = &fleet.fake;
    let state = fleet.dir.path().join("state");
    let storage = ["--storage.path", state.to_str().expect("UTF-8 path")];
    let exporter = fleet.start(&storage).await;
    let x = member_id(10);
    share(fake, PROJECT, IMG_A, &x, "pending");
    let t = trace("addMember", IMG_A, &x);
    let trace_id = t["trace_id"].as_str().expect("trace_id").to_string();
    fake.state.add_trace(PROJECT, t);
    wait_shared(&exporter, IMG_A, &x).await;
    assert!(exporter.terminate().await.success());
    // `--once` reads the daemon's state (never writes it) into its report.
    let out = fleet
        .run_once(&[storage[0], storage[1], "--once.format", "json"])
        .await;
    assert!(out.status.success(), "{}", describe(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    let row = report["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .find(|c| c["member_id"] == x.as_str())
        .unwrap_or_else(|| panic!("no change for {x}: {report}"))
        .clone();
    assert_eq!(row["trace_id"], trace_id.as_str());
    assert_eq!(row["actor"], ALICE);
    assert_eq!(row["source_ip"], ALICE_IP);
    let out = fleet
        .run_once(&[storage[0], storage[1], "--once.format", "markdown"])
        .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("## Recent changes") && text.contains(ALICE) && text.contains(&trace_id),
        "{text}"
    );
    fleet.stop().await;
}
