//! Continuity (README, "State across restarts"): with `--storage.path` a restarted
//! exporter serves the last good members at once and audits what changed while it
//! was down; an unusable state file never stops it; a reload keeps every image that
//! stays, discovered ones included, with its counters.

mod support;

use std::time::Duration;

use ims_exporter::fake_ims::member;
use support::*;

const IMG: &str = "d164b5df-1bc3-4c3f-893e-3e471fd16e64";

fn mid(i: usize) -> String {
    format!("{i:032x}")
}

fn share(fake: &ims_exporter::fake_ims::FakeIms, image: &str, i: usize) {
    fake.state.put_member(
        PROJECT,
        member(
            image,
            &mid(i),
            "project",
            "pending",
            "2025-01-01T00:00:00Z",
            "2025-01-01T00:00:00Z",
            None,
        ),
    );
}

fn members(s: &[Sample]) -> Vec<String> {
    let mut ids: Vec<String> = find(s, "ims_image_member_unexpected", &[("image_id", IMG)])
        .iter()
        .map(|s| s.label("member_id").to_string())
        .collect();
    ids.sort();
    ids
}

/// Starts an exporter of `fleet` keeping its state in `state` (returns once it listens).
async fn start(fleet: &Fleet, state: &std::path::Path) -> Exporter {
    fleet
        .start_unready(&["--storage.path", state.to_str().unwrap()])
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_serves_the_last_members_at_once_and_audits_what_changed_while_down() {
    let fleet = Fleet::new().await.images(&[IMG]);
    let fake = &fleet.fake;
    share(fake, IMG, 1);
    share(fake, IMG, 2);
    let state = fleet.dir.path().join("state");
    let exporter = start(&fleet, &state).await;
    let written = wait_for("the state to be written", async || {
        let s = exporter.scrape_samples().await;
        let ok = value(&s, "ims_exporter_state_last_write_successful", &[]) == Some(1.0);
        (ok && members(&s).len() == 2).then_some(s)
    })
    .await;
    let last_success = value(
        &written,
        "ims_image_last_success_timestamp_seconds",
        &[("image_id", IMG)],
    )
    .unwrap();
    // kill -9, then a share removed and one added while the exporter is down.
    drop(exporter);
    assert!(fake.state.remove_member(PROJECT, IMG, &mid(1)));
    share(fake, IMG, 3);
    // The first poll after the restart takes a while: the restored members are
    // served before it ends.
    fake.state.set_latency(Duration::from_secs(3));
    let exporter = start(&fleet, &state).await;
    let s = exporter.scrape_samples().await;
    assert_eq!(
        members(&s),
        [mid(1), mid(2)],
        "restored before the first poll"
    );
    let restored_success = value(
        &s,
        "ims_image_last_success_timestamp_seconds",
        &[("image_id", IMG)],
    )
    .unwrap();
    assert!(
        restored_success <= last_success + 5.0 && restored_success >= last_success - 5.0,
        "the true last success time: {restored_success} vs {last_success}"
    );
    assert_eq!(
        value(&s, "ims_exporter_state_restore_successful", &[]),
        Some(1.0)
    );
    assert!(exporter.logs().contains("restored state"));
    fake.state.set_latency(Duration::ZERO);
    wait_for("the first poll after the restart", async || {
        let s = exporter.scrape_samples().await;
        (members(&s) == [mid(2), mid(3)]).then_some(())
    })
    .await;
    let logs = exporter.logs();
    assert_eq!(logs.matches("member_added").count(), 1, "{logs}");
    assert_eq!(logs.matches("member_removed").count(), 1, "{logs}");
    assert!(
        logs.contains(&mid(3)) && !logs.contains("event=baseline"),
        "{logs}"
    );
    // The share browser's history has both changes, and keeps them across a restart.
    let expected = [("added", mid(3)), ("removed", mid(1))];
    let history = async |exporter: &Exporter| -> Vec<(String, String)> {
        let v: serde_json::Value = exporter.get("/api/v1/changes").await.json().await.unwrap();
        let mut rows: Vec<(String, String)> = v["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["change"].as_str().unwrap().to_string(),
                    c["member_id"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        rows.sort();
        rows
    };
    wait_for("the changes to be written", async || {
        let s = exporter.scrape_samples().await;
        let written = value(&s, "ims_exporter_state_last_write_successful", &[]) == Some(1.0);
        let state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(state.join("state.json")).ok()?).ok()?;
        (written && state["changes"].as_array().map(Vec::len) == Some(2)).then_some(())
    })
    .await;
    let before = history(&exporter).await;
    assert_eq!(before, expected.map(|(k, m)| (k.to_string(), m)));
    drop(exporter);
    // Served from the state file before the first poll ends.
    fake.state.set_latency(Duration::from_secs(3));
    let exporter = start(&fleet, &state).await;
    assert_eq!(history(&exporter).await, before, "restored change history");
    fake.state.set_latency(Duration::ZERO);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unusable_state_file_is_moved_aside_and_the_exporter_starts_clean() {
    let fleet = Fleet::new().await.images(&[IMG]);
    share(&fleet.fake, IMG, 1);
    let dir = &fleet.dir;
    let good = r#"{"version":1,"written_at":1.0,"images":[]}"#;
    for (what, text) in [
        ("corrupt", "{not json at all".to_string()),
        ("truncated", good[..good.len() / 2].to_string()),
        (
            "future version",
            r#"{"version":99,"written_at":1.0,"images":[]}"#.into(),
        ),
    ] {
        let state = dir.path().join(what.replace(' ', "-"));
        std::fs::create_dir_all(&state).unwrap();
        std::fs::write(state.join("state.json"), text).unwrap();
        let exporter = fleet
            .start(&["--storage.path", state.to_str().unwrap()])
            .await;
        let s = exporter.scrape_samples().await;
        assert_eq!(
            value(&s, "ims_exporter_state_restore_successful", &[]),
            Some(0.0),
            "{what}"
        );
        assert_eq!(
            value(&s, "ims_image_poll_success", &[("image_id", IMG)]),
            Some(1.0),
            "{what}: a clean start"
        );
        let logs = exporter.logs();
        assert!(
            logs.contains("cannot restore state") && logs.contains("state.json"),
            "{what}: {logs}"
        );
        let aside = std::fs::read_dir(&state)
            .unwrap()
            .filter_map(Result::ok)
            .any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("state.json.bad-")
            });
        assert!(aside, "{what}: moved aside, not deleted");
    }
    fleet.stop().await;
}

/// Reproduces the reload bug of issue 13: a discovered image lost its counters and
/// was re-baselined by a SIGHUP.
#[tokio::test(flavor = "multi_thread")]
async fn a_reload_keeps_discovered_images_with_their_counters() {
    let fleet = Fleet::new().await.target_keys("discover: {}");
    let fake = &fleet.fake;
    fake.state.add_image(PROJECT, IMG, "golden");
    share(fake, IMG, 1);
    let exporter = fleet.start(&[]).await;
    share(fake, IMG, 2);
    let added = |s: &[Sample]| {
        value(
            s,
            "ims_member_changes_total",
            &[("image_id", IMG), ("change", "added")],
        )
    };
    wait_for("the added share to be counted", async || {
        (added(&exporter.scrape_samples().await) == Some(1.0)).then_some(())
    })
    .await;
    exporter.hangup();
    exporter.wait_reloaded(1).await;
    let s = exporter.scrape_samples().await;
    assert_eq!(added(&s), Some(1.0), "the counter survives the reload");
    assert_eq!(members(&s).len(), 2, "the members are served throughout");
    // Two polls later, still no second baseline.
    let seen = fake.state.requests();
    wait_for("two more polls", async || {
        (fake.state.requests() >= seen + 2).then_some(())
    })
    .await;
    wait_for("their results", async || {
        let s = exporter.scrape_samples().await;
        let t = value(
            &s,
            "ims_image_last_success_timestamp_seconds",
            &[("image_id", IMG)],
        );
        (t > value(
            &s,
            "ims_exporter_config_last_reload_success_timestamp_seconds",
            &[],
        ))
        .then_some(())
    })
    .await;
    assert_eq!(exporter.logs().matches("event=baseline").count(), 1);
    fleet.stop().await;
}

/// The config changed while the exporter was down: an image it restored with shares
/// and no longer monitors leaves one `image_unmonitored` row. No poll judged the
/// restored list against the allowlist, so its unexpected count is unknown (`null`).
/// The row is kept in the state file like any change.
#[tokio::test(flavor = "multi_thread")]
async fn an_image_dropped_across_a_restart_says_so_in_the_change_history() {
    const OTHER: &str = "370befec-a369-475e-a224-44a45927a8fe";
    let fleet = Fleet::new().await.images(&[IMG, OTHER]);
    let fake = &fleet.fake;
    share(fake, IMG, 1);
    share(fake, IMG, 2);
    fake.state.add_image(PROJECT, OTHER, "other");
    let state = fleet.dir.path().join("state");
    let exporter = start(&fleet, &state).await;
    wait_for("the state to be written", async || {
        let file: serde_json::Value =
            serde_json::from_slice(&std::fs::read(state.join("state.json")).ok()?).ok()?;
        let images = file["images"].as_array()?;
        images
            .iter()
            .any(|i| i["image_id"] == IMG && i["members"].as_array().map(Vec::len) == Some(2))
            .then_some(())
    })
    .await;
    drop(exporter);

    // IMG leaves the config while the exporter is down.
    let config = write_config(fleet.dir.path(), &fake.endpoint(), &[OTHER], "");
    let args = [
        "--config.file",
        config.to_str().unwrap(),
        "--storage.path",
        state.to_str().unwrap(),
    ];
    let unmonitored = async |exporter: &Exporter| -> Vec<serde_json::Value> {
        let v: serde_json::Value = exporter.get("/api/v1/changes").await.json().await.unwrap();
        v["changes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["change"] == "image_unmonitored")
            .cloned()
            .collect()
    };
    let exporter = Exporter::start(&args, &[]).await;
    let rows = wait_for("the image_unmonitored row", async || {
        let rows = unmonitored(&exporter).await;
        (!rows.is_empty()).then_some(rows)
    })
    .await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["image_id"], IMG);
    assert_eq!(rows[0]["members"], 2);
    assert_eq!(rows[0]["unexpected_members"], serde_json::Value::Null);
    assert_eq!(rows[0]["unexpected"], false);
    let logs = exporter.logs();
    assert!(
        logs.contains(&format!(
            "event=image_unmonitored region={REGION} project_id={PROJECT} image_id={IMG} \
             image_name= members=2 unexpected=unknown"
        )),
        "{logs}"
    );
    wait_for("the row to be written", async || {
        let file: serde_json::Value =
            serde_json::from_slice(&std::fs::read(state.join("state.json")).ok()?).ok()?;
        let changes = file["changes"].as_array()?;
        changes
            .iter()
            .any(|c| c["change"] == "image_unmonitored" && c["members"] == 2)
            .then_some(())
    })
    .await;
    drop(exporter);
    let exporter = Exporter::start(&args, &[]).await;
    assert_eq!(
        unmonitored(&exporter).await,
        rows,
        "restored from the state file"
    );
    fleet.stop().await;
}
