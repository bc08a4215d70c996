//! An unexpected-share alert says "resolved" only when the share is gone: not when its
//! status changes, not when the exporter restarts, not when the config is reloaded
//! (docs/dashboards-and-alerts.md#alert-rules). Proven with a real Prometheus loading the shipped rules (only
//! `for:` and `keep_firing_for:` shortened, by the documented mechanism), a real
//! Alertmanager grouping by every label, and a webhook receiver on loopback.

use crate::support;
use crate::support::dashboards::{all_vars, dashboard, panels, str_of, substitute};
use crate::support::services::{require_any_tool, Alertmanager, Prometheus, Webhook};
use crate::support::*;

const IMAGE: &str = "d164b5df-1bc3-4c3f-893e-3e471fd16e64";
const ALLOWED: &str = "edc89b490d7d4392898e19b2deb34797";
const STRANGER: &str = "0badc0de0badc0de0badc0de0badc0d";
const JOB: &str = "ims";
const RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/alerts/ims-exporter.rules.yml");
/// Long enough to cover the exporter being down for a few scrapes, short enough to
/// see a removed share resolve within the test's deadline.
const KEEP_FIRING_FOR: &str = "12s";

/// What the webhook was told about the stranger's share, as (firing, resolved).
fn told(webhook: &Webhook) -> (usize, usize) {
    let about = |status: &str| {
        webhook
            .alerts()
            .iter()
            .filter(|a| {
                a.status == status
                    && a.label("alertname") == "ImsUnexpectedImageShare"
                    && a.label("member_id") == STRANGER
            })
            .count()
    };
    (about("firing"), about("resolved"))
}

/// Waits until Prometheus has taken `n` more scrapes of the exporter at `instance`
/// (each one an evaluation of the rules too, at the same 1s interval).
async fn scrapes(prom: &Prometheus, instance: &str, n: f64) {
    let count = format!(r#"count_over_time(up{{job="{JOB}",instance="{instance}"}}[5m])"#);
    let start = prom.scalar(&count).await.unwrap_or(0.0);
    wait_for("more scrapes", async || {
        (prom.scalar(&count).await.unwrap_or(0.0) >= start + n).then_some(())
    })
    .await;
}

/// The rows of the dashboard table query `expr` about the stranger's share.
async fn stranger_rows(prom: &Prometheus, expr: &str) -> Vec<serde_json::Value> {
    prom.query(expr)
        .await
        .into_iter()
        .filter(|r| r["metric"]["member_id"] == STRANGER)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_share_alert_resolves_only_when_the_share_is_gone() {
    if !require_tool("prometheus") {
        return;
    }
    let Some(alertmanager) = require_any_tool(&["alertmanager", "prometheus-alertmanager"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::new()
        .await
        .images(&[IMAGE])
        .config(&format!("allowed_members: [{ALLOWED}]"));
    let fake = &fleet.fake;
    share(fake, PROJECT, IMAGE, ALLOWED, "accepted");
    let cfg = fleet.write_config();
    let state = dir.path().join("state");
    let listen = format!("127.0.0.1:{}", support::services::free_port());
    // A second replica, started later for a while: two shards during a hand-over.
    let listen2 = format!("127.0.0.1:{}", support::services::free_port());
    let args = [
        "--config.file",
        cfg.to_str().unwrap(),
        "--storage.path",
        state.to_str().unwrap(),
    ];
    let exporter = Exporter::start_on(&listen, &args, &[]).await;
    exporter.wait_ready().await;

    let webhook = Webhook::start().await;
    let am = Alertmanager::start(
        &alertmanager,
        dir.path(),
        &format!(
            "route:\n  receiver: webhook\n  group_by: ['...']\n\
             \x20 group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
             receivers:\n  - name: webhook\n    webhook_configs:\n      - url: '{}'\n        send_resolved: true\n",
            webhook.url()
        ),
    )
    .await;
    let (rules, _) = rules::shorten(
        &std::fs::read_to_string(RULES).unwrap(),
        &[("for", "1s"), ("keep_firing_for", KEEP_FIRING_FOR)],
    );
    let prom =
        Prometheus::start_alerting(dir.path(), &rules, &am.0.addr(), JOB, &[&listen, &listen2])
            .await;

    // An unexpected share appears: exactly one firing.
    share(fake, PROJECT, IMAGE, STRANGER, "pending");
    wait_for("the alert at the webhook", async || {
        (told(&webhook) == (1, 0)).then_some(())
    })
    .await;

    // Its status changes: the same alert, nothing new said.
    share(fake, PROJECT, IMAGE, STRANGER, "accepted");
    wait_for("the new status in Prometheus", async || {
        let q =
            format!(r#"ims_image_member_unexpected{{member_id="{STRANGER}",status="accepted"}}"#);
        (!prom.query(&q).await.is_empty()).then_some(())
    })
    .await;
    scrapes(&prom, &listen, 4.0).await;
    assert_eq!(
        told(&webhook),
        (1, 0),
        "status change: {:?}",
        webhook.alerts()
    );

    // The exporter is down for more than two scrape intervals, then back with its state.
    drop(exporter);
    scrapes(&prom, &listen, 3.0).await;
    assert_eq!(
        prom.scalar(&format!(r#"up{{job="{JOB}",instance="{listen}"}}"#))
            .await,
        Some(0.0)
    );
    let exporter = Exporter::start_on(&listen, &args, &[]).await;
    wait_for("the restarted exporter to be scraped", async || {
        (prom
            .scalar(&format!(r#"up{{job="{JOB}",instance="{listen}"}}"#))
            .await
            == Some(1.0))
        .then_some(())
    })
    .await;
    scrapes(&prom, &listen, 3.0).await;
    assert_eq!(told(&webhook), (1, 0), "restart: {:?}", webhook.alerts());
    // The dashboard's unexpected-shares table has one row for the share, with its
    // current status, after the status change and the restart.
    let overview = dashboard("dashboards/ims-sharing-overview.json");
    let table = panels(&overview)
        .into_iter()
        .find(|p| p["title"] == "Unexpected shares" && p["type"] == "table")
        .expect("Unexpected shares table");
    let expr = substitute(
        str_of(&table["targets"][0], "expr"),
        &all_vars(&overview, ".*"),
    )
    .unwrap();
    let rows = stranger_rows(&prom, &expr).await;
    assert_eq!(rows.len(), 1, "one row per share: {rows:?}");
    assert_eq!(rows[0]["metric"]["status"], "accepted", "{rows:?}");

    // A second replica exports the same share for a while (two shards during a
    // hand-over): still one alert, one table row; it goes away without a resolved.
    let second = Exporter::start_on(&listen2, &args[..2], &[]).await;
    wait_for("the second replica's share in Prometheus", async || {
        let q = format!(
            r#"ims_image_member_unexpected{{instance="{listen2}",member_id="{STRANGER}"}}"#
        );
        (!prom.query(&q).await.is_empty()).then_some(())
    })
    .await;
    scrapes(&prom, &listen2, 2.0).await;
    let rows = stranger_rows(&prom, &expr).await;
    assert_eq!(
        rows.len(),
        1,
        "one row per share across two replicas: {rows:?}"
    );
    drop(second);
    scrapes(&prom, &listen2, 3.0).await;
    assert_eq!(
        told(&webhook),
        (1, 0),
        "two replicas: {:?}",
        webhook.alerts()
    );

    // A config reload.
    exporter.reload().await;
    scrapes(&prom, &listen, 3.0).await;
    assert_eq!(told(&webhook), (1, 0), "reload: {:?}", webhook.alerts());

    // The share is removed: exactly one resolved, within keep_firing_for.
    assert!(fake.state.remove_member(PROJECT, IMAGE, STRANGER));
    wait_for("the resolved notification", async || {
        (told(&webhook).1 >= 1).then_some(())
    })
    .await;
    scrapes(&prom, &listen, 3.0).await;
    assert_eq!(told(&webhook), (1, 1), "{:?}", webhook.alerts());
    fleet.stop().await;
}
