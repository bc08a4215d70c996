//! Reloading the configuration (SIGHUP, POST /-/reload): a good config is taken
//! without a gap in the series of images that stay; a bad one is refused and the old
//! one keeps running.

use crate::support::*;

const IMG_A: &str = "d164b5df-1bc3-4c3f-893e-3e471fd16e64";
const IMG_B: &str = "370befec-a369-475e-a224-44a45927a8fe";
const IMG_C: &str = "5b1f8e0a-6c1e-4a53-9d7e-2f0b8c1d9e21";

fn ids(s: &[Sample], name: &str) -> Vec<String> {
    let mut v: Vec<String> = find(s, name, &[])
        .iter()
        .map(|s| s.label("image_id").to_string())
        .collect();
    v.sort();
    v.dedup();
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_takes_a_good_config_and_refuses_a_bad_one() {
    let fleet = Fleet::new()
        .await
        .shared(&[IMG_A, IMG_B, IMG_C])
        .images(&[IMG_A, IMG_B]);
    let fake = &fleet.fake;
    let exporter = fleet.start(&["--web.enable-lifecycle"]).await;
    let s = exporter.scrape_samples().await;
    assert_eq!(ids(&s, "ims_image_member_info"), [IMG_B, IMG_A]);
    assert_eq!(
        value(&s, "ims_exporter_config_last_reload_successful", &[]),
        Some(1.0)
    );
    let loaded_at = value(
        &s,
        "ims_exporter_config_last_reload_success_timestamp_seconds",
        &[],
    )
    .unwrap();
    let a_success = value(
        &s,
        "ims_image_last_success_timestamp_seconds",
        &[("image_id", IMG_A)],
    )
    .unwrap();

    // Keep A, drop B, add C; scrape all the while: A's series never go missing.
    fleet.rewrite(|c| c.no_images().images(&[IMG_A, IMG_C]));
    let client = reqwest::Client::new();
    let reload = tokio::spawn({
        let url = exporter.url("/-/reload");
        let client = client.clone();
        async move { client.post(url).send().await.unwrap() }
    });
    let mut scrapes = 0;
    while !reload.is_finished() || scrapes < 3 {
        let s = exporter.scrape_samples().await;
        assert_eq!(
            find(&s, "ims_image_member_info", &[("image_id", IMG_A)]).len(),
            1,
            "A is served throughout the reload"
        );
        scrapes += 1;
    }
    let resp = reload.await.unwrap();
    assert_eq!(resp.status(), 200);
    let s = wait_for("C to be polled", async || {
        let s = exporter.scrape_samples().await;
        (ids(&s, "ims_image_member_info") == [IMG_C, IMG_A]).then_some(s)
    })
    .await;
    assert!(
        find(&s, "ims_image_poll_success", &[("image_id", IMG_B)]).is_empty(),
        "B is no longer exported"
    );
    assert!(
        value(
            &s,
            "ims_image_last_success_timestamp_seconds",
            &[("image_id", IMG_A)]
        )
        .unwrap()
            >= a_success
    );
    assert!(
        value(
            &s,
            "ims_exporter_config_last_reload_success_timestamp_seconds",
            &[]
        )
        .unwrap()
            > loaded_at
    );

    // A broken config over SIGHUP: refused, the old one keeps polling.
    fleet.rewrite(|c| c.config("poll_interval: never"));
    exporter.hangup();
    let s = wait_for("the refused reload", async || {
        let s = exporter.scrape_samples().await;
        (value(&s, "ims_exporter_config_last_reload_successful", &[]) == Some(0.0)).then_some(s)
    })
    .await;
    assert_eq!(ids(&s, "ims_image_member_info"), [IMG_C, IMG_A]);
    // The same over HTTP says why.
    let resp = client.post(exporter.url("/-/reload")).send().await.unwrap();
    assert_eq!(resp.status(), 500);
    let body = resp.text().await.unwrap();
    assert!(
        body.contains("failed to reload config") && body.contains("poll_interval"),
        "{body}"
    );
    assert_eq!(
        exporter.get("/-/reload").await.status(),
        405,
        "reload is POST only"
    );
    let polls = fake.state.requests();
    wait_for("polls to go on", async || {
        (fake.state.requests() >= polls + 2).then_some(())
    })
    .await;
    fleet.stop().await;
}

const ALLOWED: &str = "edc89b490d7d4392898e19b2deb34797";
const STRANGER: &str = "0badc0de0badc0de0badc0de0badc0d";

/// The `image_unmonitored` rows of `/api/v1/changes`.
async fn unmonitored(exporter: &Exporter) -> Vec<serde_json::Value> {
    let list: serde_json::Value = exporter.get("/api/v1/changes").await.json().await.unwrap();
    list["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["change"] == "image_unmonitored")
        .cloned()
        .collect()
}

/// An image that a reload drops while it had shares leaves one `image_unmonitored` row
/// in the change history, with its member and unexpected counts, and one log line: the
/// history says why its shares are no longer listed. An image without shares leaves
/// none.
#[tokio::test(flavor = "multi_thread")]
async fn a_reload_that_drops_a_shared_image_says_so_in_the_change_history() {
    let fleet = Fleet::new()
        .await
        .image(IMG_A, "name: golden")
        .images(&[IMG_B, IMG_C])
        .config(&format!("allowed_members: [{ALLOWED}]"));
    share(&fleet.fake, PROJECT, IMG_A, ALLOWED, "pending");
    share(&fleet.fake, PROJECT, IMG_A, STRANGER, "pending");
    share(&fleet.fake, PROJECT, IMG_B, ALLOWED, "pending");
    let exporter = fleet.start(&[]).await;
    assert_eq!(
        unmonitored(&exporter).await,
        Vec::<serde_json::Value>::new()
    );

    // A (two shares) and C (none) leave the config.
    fleet.rewrite(|c| c.no_images().images(&[IMG_B]));
    exporter.reload().await;
    let rows = unmonitored(&exporter).await;
    assert_eq!(rows.len(), 1, "one row, for A only: {rows:?}");
    let row = &rows[0];
    for (field, want) in [
        ("region", serde_json::json!(REGION)),
        ("project_id", serde_json::json!(PROJECT)),
        ("image_id", serde_json::json!(IMG_A)),
        ("image_name", serde_json::json!("golden")),
        ("member_id", serde_json::json!("")),
        ("member_type", serde_json::json!("")),
        ("status", serde_json::json!("")),
        ("old_status", serde_json::Value::Null),
        ("unexpected", serde_json::json!(true)),
        ("members", serde_json::json!(2)),
        ("unexpected_members", serde_json::json!(1)),
    ] {
        assert_eq!(row[field], want, "{field}: {row}");
    }
    assert!(row["time"].as_str().unwrap().ends_with('Z'), "{row}");
    let line = format!(
        "event=image_unmonitored region={REGION} project_id={PROJECT} image_id={IMG_A} \
         image_name=golden members=2 unexpected=1"
    );
    let logs = exporter.logs();
    assert_eq!(logs.matches(&line).count(), 1, "{line} in\n{logs}");
    assert_eq!(logs.matches("event=image_unmonitored").count(), 1, "{logs}");
    // The share browser's recent changes show it too.
    let page = exporter.get("/shares").await.text().await.unwrap();
    let table = &page[page
        .find("<table id=\"changes\">")
        .expect("the changes table")..];
    let table = &table[..table.find("</table>").unwrap()];
    assert!(
        table.contains("image unmonitored")
            && table.contains(IMG_A)
            && table.contains("2 member(s), 1 unexpected"),
        "{table}"
    );
    fleet.stop().await;
}

/// Discovery that no longer lists an image (deleted, or no longer matching the
/// filters) records it like a reload does; a reload that changes the filter drops only
/// what the new filter leaves out, once its discovery says so: an image both filters
/// find keeps its state and leaves no row.
#[tokio::test(flavor = "multi_thread")]
async fn discovery_that_drops_a_shared_image_says_so_in_the_change_history() {
    let fleet = Fleet::new()
        .await
        .target_keys("discover:\n  name_regex: \"^golden-\"")
        .config("discovery_interval: 1s");
    let fake = &fleet.fake;
    fake.state.add_image(PROJECT, IMG_A, "golden-a");
    fake.state.add_image(PROJECT, IMG_B, "golden-b");
    fake.state.add_image(PROJECT, IMG_C, "golden-c");
    for image in [IMG_A, IMG_B, IMG_C] {
        share(&fleet.fake, PROJECT, image, ALLOWED, "pending");
        share(&fleet.fake, PROJECT, image, STRANGER, "pending");
    }
    let exporter = fleet.start(&[]).await;
    let monitored = async || -> Vec<String> {
        let list: serde_json::Value = exporter.get("/api/v1/images").await.json().await.unwrap();
        let mut ids: Vec<String> = list["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["image_id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    let mut all = vec![IMG_A.to_string(), IMG_B.to_string(), IMG_C.to_string()];
    all.sort();
    assert_eq!(monitored().await, all);

    // C is deleted: the next discovery no longer lists it.
    fake.state.remove_image(PROJECT, IMG_C);
    let rows = wait_for("C's row", async || {
        let rows = unmonitored(&exporter).await;
        (!rows.is_empty()).then_some(rows)
    })
    .await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["image_id"], IMG_C);
    assert_eq!(rows[0]["image_name"], "golden-c");
    assert_eq!(rows[0]["members"], 2);
    assert_eq!(rows[0]["unexpected_members"], 2);

    // A narrower filter: B leaves, A stays (with its state: no second baseline).
    fleet.rewrite(|c| c.target_keys("discover:\n  name_regex: \"^golden-a\""));
    exporter.reload().await;
    let rows = wait_for("B's row", async || {
        let rows = unmonitored(&exporter).await;
        (rows.len() >= 2).then_some(rows)
    })
    .await;
    assert_eq!(monitored().await, [IMG_A]);
    let ids: Vec<&str> = rows
        .iter()
        .map(|r| r["image_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [IMG_B, IMG_C],
        "newest first, and no row for A: {rows:?}"
    );
    let logs = exporter.logs();
    assert_eq!(
        logs.matches(&format!(
            "event=baseline region={REGION} project_id={PROJECT} image_id={IMG_A}"
        ))
        .count(),
        1,
        "A keeps its audit baseline across the reload:\n{logs}"
    );
    fleet.stop().await;
}
