//! Reloading the configuration (SIGHUP, POST /-/reload): a good config is taken
//! without a gap in the series of images that stay; a bad one is refused and the old
//! one keeps running.

mod support;

use support::*;

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
    let (fake, dir, cfg) = (&fleet.fake, &fleet.dir, fleet.config_path());
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
    write_config(dir.path(), &fake.endpoint(), &[IMG_A, IMG_C], "");
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
    assert!(exporter.logs().contains("configuration reloaded"));

    // A broken config over SIGHUP: refused, the old one keeps polling.
    std::fs::write(&cfg, "poll_interval: never\n").unwrap();
    exporter.hangup();
    let s = wait_for("the refused reload", async || {
        let s = exporter.scrape_samples().await;
        (value(&s, "ims_exporter_config_last_reload_successful", &[]) == Some(0.0)).then_some(s)
    })
    .await;
    assert_eq!(ids(&s, "ims_image_member_info"), [IMG_C, IMG_A]);
    let logs = exporter.logs();
    assert!(
        logs.contains("reload refused") && logs.contains("poll_interval"),
        "{logs}"
    );
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
