//! Scale-out: replicas that split the images by rendezvous hashing, and dashboards that
//! show the same totals across shards as from one unsharded exporter.

use std::collections::{BTreeMap, BTreeSet};

use crate::support::dashboards::{all_vars, dashboard, panel_queries, substitute};
use crate::support::services::Prometheus;
use crate::support::*;
use serde_json::Value;

const IMAGES: usize = 300;

fn image(i: usize) -> String {
    format!("{i:08x}-1111-4000-8000-000000000000")
}

/// 300 discoverable images, each shared with two members (one unexpected), and a
/// config that discovers them.
async fn fleet() -> Fleet {
    let fleet = Fleet::new()
        .await
        .config(
            "poll_interval: 5s\ndiscovery_interval: 1m\nmax_concurrent_requests: 16\n\
             allowed_members: [edc89b490d7d4392898e19b2deb34797]",
        )
        .target_keys("discover: {}");
    let fake = &fleet.fake;
    for i in 0..IMAGES {
        fake.state
            .add_image(PROJECT, &image(i), &format!("golden-{i}"));
        for (m, status) in [
            ("edc89b490d7d4392898e19b2deb34797", "accepted"),
            ("0f1e2d3c4b5a69788796a5b4c3d2e1f0", "pending"),
        ] {
            share(fake, PROJECT, &image(i), m, status);
        }
    }
    fleet
}

async fn replicas(fleet: &Fleet, count: usize) -> Vec<Exporter> {
    let mut out = Vec::new();
    for index in 0..count {
        let (c, i) = (count.to_string(), index.to_string());
        out.push(
            fleet
                .start_unready(&["--shard.count", &c, "--shard.index", &i])
                .await,
        );
    }
    for e in &out {
        e.wait_ready().await;
    }
    out
}

/// Which images each replica exports.
async fn assignment(replicas: &[Exporter]) -> Vec<BTreeSet<String>> {
    let mut out = Vec::new();
    for r in replicas {
        let s = r.scrape_samples().await;
        out.push(
            find(&s, "ims_image_info", &[])
                .iter()
                .map(|s| s.label("image_id").to_string())
                .collect(),
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_split_the_images_and_move_few_when_scaled() {
    let fleet = fleet().await;
    let three = replicas(&fleet, 3).await;
    let by3 = assignment(&three).await;
    let all: BTreeSet<String> = (0..IMAGES).map(image).collect();
    let union: BTreeSet<String> = by3.iter().flatten().cloned().collect();
    assert_eq!(union, all, "every image is exported");
    assert_eq!(
        by3.iter().map(BTreeSet::len).sum::<usize>(),
        IMAGES,
        "by exactly one replica"
    );
    for (i, share) in by3.iter().enumerate() {
        assert!(
            (70..=130).contains(&share.len()),
            "replica {i} has {} of {IMAGES}",
            share.len()
        );
        let s = three[i].scrape_samples().await;
        assert_eq!(
            value(
                &s,
                "ims_exporter_shard_info",
                &[("index", &i.to_string()), ("count", "3")]
            ),
            Some(1.0)
        );
        assert_eq!(
            value(&s, "ims_images_monitored", &[]),
            Some(share.len() as f64)
        );
    }
    drop(three);

    let four = replicas(&fleet, 4).await;
    let by4 = assignment(&four).await;
    let owner = |sets: &[BTreeSet<String>], id: &str| sets.iter().position(|s| s.contains(id));
    let moved = all
        .iter()
        .filter(|id| owner(&by3, id) != owner(&by4, id))
        .count();
    assert!(
        moved as f64 <= 0.35 * IMAGES as f64,
        "{moved} of {IMAGES} images moved"
    );
    assert_eq!(by4.iter().map(BTreeSet::len).sum::<usize>(), IMAGES);
    fleet.stop().await;
}

/// Results of a query as (labels without job and instance) → value.
fn series(result: &[Value]) -> BTreeMap<String, f64> {
    result
        .iter()
        .map(|s| {
            let mut m = s["metric"].as_object().cloned().unwrap_or_default();
            m.remove("job");
            m.remove("instance");
            let v: f64 = s["value"][1]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::NAN);
            (serde_json::to_string(&m).unwrap(), v)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboards_show_the_same_totals_sharded_and_unsharded() {
    if !require_tool("prometheus") {
        return;
    }
    let fleet = fleet().await;
    let dir = &fleet.dir;
    let shards = replicas(&fleet, 3).await;
    let single = fleet.start(&[]).await;
    let targets = |es: &[&Exporter]| {
        es.iter()
            .map(|e| format!("\"{}\"", e.addr))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let prom = Prometheus::start(
        dir.path(),
        &format!(
            "global:\n  scrape_interval: 2s\n  evaluation_interval: 2s\nscrape_configs:\n  - job_name: ims\n    static_configs:\n      - targets: [{}]\n  - job_name: ims-single\n    static_configs:\n      - targets: [{}]\n",
            targets(&shards.iter().collect::<Vec<_>>()),
            targets(&[&single])
        ),
    )
    .await;
    wait_for(
        "both jobs to be scraped with all images polled",
        async || {
            let n = |job: &str| format!("sum(ims_images_monitored{{job=\"{job}\"}})");
            // Monitored is known before the first poll ends; the shares only after it.
            let shares = |job: &str| format!("count(ims_image_member_unexpected{{job=\"{job}\"}})");
            let (a, b) = (
                prom.scalar(&n("ims")).await,
                prom.scalar(&n("ims-single")).await,
            );
            let (sa, sb) = (
                prom.scalar(&shares("ims")).await,
                prom.scalar(&shares("ims-single")).await,
            );
            (a == Some(IMAGES as f64) && b == Some(IMAGES as f64) && sa.is_some() && sa == sb)
                .then_some(())
        },
    )
    .await;

    // Queries whose value depends on when they are evaluated or scraped cannot be equal
    // between two sets of processes; every other panel query must be.
    let timing = [
        "time()",
        "rate(",
        "increase(",
        "_age_",
        "duration",
        "timestamp",
        "histogram_quantile",
        "changes(",
        "delta(",
        "up",
        "scrape_",
        "ALERTS",
        "build_info",
        "shard",
    ];
    let mut compared = 0;
    for file in [
        "dashboards/ims-sharing-overview.json",
        "dashboards/ims-exporter-health.json",
    ] {
        let d = dashboard(file);
        for q in panel_queries(file, &d) {
            if timing.iter().any(|t| q.expr.contains(t)) {
                continue;
            }
            let run = |job: &str| {
                let mut vars = all_vars(&d, ".*");
                vars.insert("job".into(), job.into());
                substitute(&q.expr, &vars).unwrap()
            };
            let (a, b) = (
                prom.query(&run("ims")).await,
                prom.query(&run("ims-single")).await,
            );
            let sharded = series(&a);
            if sharded.len() < a.len() {
                // A per-instance view (the health dashboard's): one line per replica.
                continue;
            }
            assert_eq!(sharded, series(&b), "{q}");
            compared += 1;
        }
    }
    assert!(compared >= 5, "only {compared} panel queries compared");
    drop(prom);
    drop(shards);
    fleet.stop().await;
}
