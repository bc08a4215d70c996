//! Unexpected shares, discovery, watched members and the change audit, end to end:
//! the real binary against the fake IMS, as a security team would rely on them.

use crate::support::*;
use ims_exporter::fake_ims::Fault;

const IMG: &str = "d164b5df-1bc3-4c3f-893e-3e471fd16e64";
const IMG2: &str = "370befec-a369-475e-a224-44a45927a8fe";
const P1: &str = "edc89b490d7d4392898e19b2deb34797";
const P2: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
const D1: &str = "5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d";
const ORG: &str = "ou-qdjrky7i07higfa4f6reqv9etybmp4ng";
const ORG_URN: &str = "organizations::6c031a41eefc480bb60f20c003891fcd:ou:o-z5142zmm6p5cumsxralfljeb3qrwqamd/ou-qdjrky7i07higfa4f6reqv9etybmp4ng";

/// The fleet of these tests, which discover every second too.
async fn new_fleet() -> Fleet {
    Fleet::new().await.config("discovery_interval: 1s")
}

fn unexpected_ids(samples: &[Sample], image: &str) -> Vec<String> {
    let mut v: Vec<String> = find(
        samples,
        "ims_image_member_unexpected",
        &[("image_id", image)],
    )
    .iter()
    .map(|s| s.label("member_id").to_string())
    .collect();
    v.sort();
    v
}

fn count_logs(exporter: &Exporter, needles: &[&str]) -> usize {
    exporter
        .log_lines()
        .iter()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn allowlists_by_id_glob_urn_and_file() {
    let fleet = new_fleet().await;
    let file = fleet.dir.path().join("allowed.txt");
    std::fs::write(
        &file,
        "# approved by security\n5a6b7c8d*   # glob in the file\n",
    )
    .unwrap();
    // IMG: exact ID at the top level, a glob in the file, a URN for the organization.
    // IMG2 has no entries of its own but inherits the top level and the file.
    let fleet = fleet
        .config(&format!(
            "allowed_members: [{P1}]\nallowed_members_file: {}",
            file.display()
        ))
        .image(
            IMG,
            "expected_members: [\"urn:organizations::6c03*:ou:o-z514*/*\"]",
        )
        .images(&[IMG2]);
    let fake = &fleet.fake;
    share(fake, PROJECT, IMG, P1, "accepted");
    share(fake, PROJECT, IMG, P2, "rejected");
    Share::new(PROJECT, IMG, D1)
        .kind("domain")
        .status("pending")
        .put(fake);
    Share::new(PROJECT, IMG, ORG)
        .kind("organization")
        .urn(ORG_URN)
        .put(fake);
    share(fake, PROJECT, IMG2, P1, "accepted");
    let exporter = fleet.start(&[]).await;
    let s = exporter.scrape_samples().await;
    // P2 matches nothing: unexpected even though the recipient rejected the share.
    assert_eq!(unexpected_ids(&s, IMG), [P2]);
    let stray = find(&s, "ims_image_member_unexpected", &[("image_id", IMG)]);
    assert_eq!(
        (stray[0].label("member_type"), stray[0].label("status")),
        ("project", "rejected")
    );
    assert_eq!(
        value(&s, "ims_image_unexpected_members", &[("image_id", IMG)]),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "ims_image_unexpected_members", &[("image_id", IMG2)]),
        Some(0.0),
        "always present, 0 when clean"
    );

    // The security team edits the file; the next poll applies it without a restart.
    std::fs::write(&file, format!("5a6b7c8d*\n{P2}\n")).unwrap();
    wait_for("the edited allowlist file to apply", async || {
        let s = exporter.scrape_samples().await;
        (value(&s, "ims_image_unexpected_members", &[("image_id", IMG)]) == Some(0.0)).then_some(())
    })
    .await;
    // Removing the glob from the file makes the domain member unexpected again.
    std::fs::write(&file, format!("{P2}\n")).unwrap();
    wait_for("the narrowed allowlist file to apply", async || {
        let s = exporter.scrape_samples().await;
        (unexpected_ids(&s, IMG) == [D1]).then_some(())
    })
    .await;
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn no_allowlist_means_every_member_is_unexpected() {
    let fleet = new_fleet().await.images(&[IMG]);
    let fake = &fleet.fake;
    share(fake, PROJECT, IMG, P1, "accepted");
    Share::new(PROJECT, IMG, ORG)
        .kind("organization")
        .urn(ORG_URN)
        .status("pending")
        .put(fake);
    let exporter = fleet.start(&[]).await;
    let s = exporter.scrape_samples().await;
    let mut want = vec![P1.to_string(), ORG.to_string()];
    want.sort();
    assert_eq!(unexpected_ids(&s, IMG), want);
    assert_eq!(
        value(&s, "ims_image_unexpected_members", &[("image_id", IMG)]),
        Some(2.0)
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn added_and_removed_shares_are_audited_once() {
    let fleet = new_fleet()
        .await
        .image(IMG, &format!("expected_members: [{P1}]"));
    let fake = &fleet.fake;
    share(fake, PROJECT, IMG, P1, "pending");
    let exporter = fleet.start(&[]).await;
    // The first poll is a baseline: one line, no `added` events.
    assert_eq!(
        count_logs(&exporter, &["event=baseline", IMG]),
        1,
        "{}",
        exporter.logs()
    );
    assert_eq!(count_logs(&exporter, &["event=member_added"]), 0);

    // Someone shares the image with a stranger.
    Share::new(PROJECT, IMG, D1)
        .kind("domain")
        .status("pending")
        .put(fake);
    let s = wait_for("the new share to show", async || {
        let s = exporter.scrape_samples().await;
        (value(&s, "ims_image_unexpected_members", &[("image_id", IMG)]) == Some(1.0)).then_some(s)
    })
    .await;
    assert_eq!(unexpected_ids(&s, IMG), [D1]);
    assert_eq!(
        value(
            &s,
            "ims_member_changes_total",
            &[("image_id", IMG), ("change", "added")]
        ),
        Some(1.0)
    );
    let added = exporter
        .log_lines()
        .into_iter()
        .filter(|l| l.contains("event=member_added"))
        .collect::<Vec<_>>();
    assert_eq!(added.len(), 1, "{added:?}");
    for field in [
        &format!("member_id={D1}"),
        "member_type=domain",
        "unexpected=true",
        &format!("image_id={IMG}"),
        &format!("project_id={PROJECT}"),
        "region=cn-north-4",
        "level=info",
    ] {
        assert!(added[0].contains(field), "{field} in {}", added[0]);
    }

    // The expected member accepts: one status change, with old and new status.
    share(fake, PROJECT, IMG, P1, "accepted");
    wait_for("the status change", async || {
        (count_logs(&exporter, &["event=member_status_changed"]) == 1).then_some(())
    })
    .await;
    let line = exporter
        .log_lines()
        .into_iter()
        .find(|l| l.contains("event=member_status_changed"))
        .unwrap();
    assert!(
        line.contains("old_status=pending")
            && line.contains("status=accepted")
            && line.contains("unexpected=false"),
        "{line}"
    );

    // The stranger is removed: back to 0, one `removed` event.
    assert!(fake.state.remove_member(PROJECT, IMG, D1));
    let s = wait_for("the removal", async || {
        let s = exporter.scrape_samples().await;
        (value(&s, "ims_image_unexpected_members", &[("image_id", IMG)]) == Some(0.0)).then_some(s)
    })
    .await;
    assert!(find(&s, "ims_image_member_unexpected", &[]).is_empty());
    assert_eq!(
        value(
            &s,
            "ims_member_changes_total",
            &[("image_id", IMG), ("change", "removed")]
        ),
        Some(1.0)
    );
    wait_for("one removed event", async || {
        (count_logs(&exporter, &["event=member_removed", D1]) == 1).then_some(())
    })
    .await;
    // Later polls of an unchanged list log nothing new.
    let polls = fake.state.requests();
    wait_for("two more polls", async || {
        (fake.state.requests() >= polls + 2).then_some(())
    })
    .await;
    assert_eq!(count_logs(&exporter, &["event=member_status_changed"]), 1);
    assert_eq!(count_logs(&exporter, &["event=member_added"]), 1);
    assert_eq!(count_logs(&exporter, &["event=member_removed"]), 1);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn watched_members_with_and_without_listing() {
    let fleet = new_fleet()
        .await
        .config(&format!("allowed_members: [{P1}, {P2}, {ORG}]"))
        .image(IMG, &format!("watch_members: [{P1}]"))
        .image(
            IMG2,
            &format!("list_members: false\nwatch_members: [{ORG}, {D1}]"),
        );
    let fake = &fleet.fake;
    share(fake, PROJECT, IMG, P1, "accepted");
    share(fake, PROJECT, IMG, P2, "accepted");
    Share::new(PROJECT, IMG2, ORG)
        .kind("organization")
        .urn(ORG_URN)
        .put(fake);
    let exporter = fleet.start(&[]).await;
    let s = exporter.scrape_samples().await;
    assert_eq!(
        value(
            &s,
            "ims_image_member_present",
            &[("image_id", IMG), ("member_id", P1)]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &s,
            "ims_image_member_present",
            &[("image_id", IMG2), ("member_id", ORG)]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &s,
            "ims_image_member_present",
            &[("image_id", IMG2), ("member_id", D1)]
        ),
        Some(0.0)
    );
    // The unlisted image still gets info and timestamps for what the detail calls found,
    // but no counts: its member list was never read.
    let info = find(&s, "ims_image_member_info", &[("image_id", IMG2)]);
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].label("urn"), ORG_URN);
    assert!(value(
        &s,
        "ims_image_member_created_timestamp_seconds",
        &[("image_id", IMG2), ("member_id", ORG)]
    )
    .is_some());
    assert!(find(&s, "ims_image_members", &[("image_id", IMG2)]).is_empty());
    assert_eq!(
        value(&s, "ims_image_poll_success", &[("image_id", IMG2)]),
        Some(1.0)
    );

    // The fake deletes the watched share.
    fake.state.remove_member(PROJECT, IMG, P1);
    wait_for("the watched member to go", async || {
        let s = exporter.scrape_samples().await;
        (value(
            &s,
            "ims_image_member_present",
            &[("image_id", IMG), ("member_id", P1)],
        ) == Some(0.0))
        .then_some(())
    })
    .await;
    let images: serde_json::Value = exporter.get("/api/v1/images").await.json().await.unwrap();
    let image = images["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["image_id"] == IMG)
        .expect("the image in /api/v1/images");
    assert_eq!(image["watched_missing"], serde_json::json!([P1]), "{image}");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn least_privilege_image_never_lists_members() {
    let fleet = new_fleet()
        .await
        .image(IMG, &format!("list_members: false\nwatch_members: [{ORG}]"));
    let fake = &fleet.fake;
    Share::new(PROJECT, IMG, ORG)
        .kind("organization")
        .urn(ORG_URN)
        .put(fake);
    let exporter = fleet.start(&[]).await;
    let s = exporter.scrape_samples().await;
    assert!(find(
        &s,
        "ims_api_requests_total",
        &[("operation", "list_members")]
    )
    .is_empty());
    assert!(
        value(
            &s,
            "ims_api_requests_total",
            &[("operation", "get_member"), ("code", "200")]
        )
        .unwrap()
            >= 1.0
    );
    fleet.stop().await;
}

/// 1,100 images: 1,050 tagged `env.prod` (so the listing takes three pages of 500),
/// of which the `golden-` ones are wanted, minus one excluded ID. Plus images of
/// another type and visibility that the server-side filters drop.
#[tokio::test(flavor = "multi_thread")]
async fn discovery_pages_filters_and_keeps_the_last_good_set() {
    let id = |i: usize| format!("{i:08x}-0000-4000-8000-000000000000");
    let fleet = new_fleet()
        .await
        .config("poll_interval: 1h")
        .target_keys(&format!(
            "discover:\n  imagetype: private\n  visibility: private\n  tag: env.prod\n  name_regex: \"^golden-\"\n  exclude_ids: [{}]",
            id(10)
        ))
        .image(&id(0), &format!("expected_members: [{P1}]"));
    let fake = &fleet.fake;
    let mut want = Vec::new();
    for i in 0..1100 {
        let golden = i % 2 == 0;
        let name = if golden {
            format!("golden-{i}")
        } else {
            format!("scratch-{i}")
        };
        fake.state.add_image(PROJECT, &id(i), &name);
        let tags: &[&str] = if i < 1050 {
            &["env.prod"]
        } else {
            &["env.dev"]
        };
        fake.state
            .set_image_attributes(PROJECT, &id(i), "private", "private", tags);
        if golden && i < 1050 && i != 10 {
            want.push(id(i));
        }
    }
    // Each filter alone drops one of these: the image type, then the visibility.
    fake.state.add_image(PROJECT, &id(5000), "golden-shared");
    fake.state
        .set_image_attributes(PROJECT, &id(5000), "shared", "private", &["env.prod"]);
    fake.state.add_image(PROJECT, &id(5002), "golden-public");
    fake.state
        .set_image_attributes(PROJECT, &id(5002), "private", "public", &["env.prod"]);
    // A configured image that discovery also finds keeps its config (its allowlist).
    share(fake, PROJECT, &id(0), P1, "accepted");
    let exporter = fleet.start(&[]).await;
    let s = exporter.scrape_samples().await;
    let mut got: Vec<String> = find(&s, "ims_image_info", &[])
        .iter()
        .map(|s| s.label("image_id").to_string())
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(
        value(&s, "ims_discovered_images", &[("project_id", PROJECT)]),
        Some(want.len() as f64)
    );
    assert_eq!(
        value(&s, "ims_image_info", &[("image_id", &id(0))]).map(|_| ()),
        Some(())
    );
    let configured = find(&s, "ims_image_info", &[("image_id", &id(0))]);
    assert_eq!(
        (
            configured[0].label("source"),
            configured[0].label("image_name")
        ),
        ("config", "golden-0")
    );
    let discovered = find(&s, "ims_image_info", &[("image_id", &id(2))]);
    assert_eq!(
        (
            discovered[0].label("source"),
            discovered[0].label("image_name")
        ),
        ("discovery", "golden-2")
    );
    assert_eq!(
        value(&s, "ims_image_unexpected_members", &[("image_id", &id(0))]),
        Some(0.0),
        "configured allowlist wins"
    );
    assert!(
        value(
            &s,
            "ims_api_requests_total",
            &[("operation", "list_images"), ("code", "200")]
        )
        .unwrap()
            >= 3.0,
        "three pages"
    );
    assert_eq!(
        value(&s, "ims_images_monitored", &[]),
        Some(want.len() as f64)
    );

    // A failed discovery keeps the image set.
    fake.state.set_fault(PROJECT, Some(Fault::Status(500)));
    let s = wait_for("a failed discovery", async || {
        let s = exporter.scrape_samples().await;
        (value(&s, "ims_discovery_success", &[("project_id", PROJECT)]) == Some(0.0)).then_some(s)
    })
    .await;
    assert_eq!(find(&s, "ims_image_info", &[]).len(), want.len());

    // An image that disappears stops being exported.
    fake.state.set_fault(PROJECT, None);
    fake.state.remove_image(PROJECT, &id(2));
    wait_for("the deleted image to go", async || {
        let s = exporter.scrape_samples().await;
        find(&s, "ims_image_info", &[("image_id", &id(2))])
            .is_empty()
            .then_some(())
    })
    .await;
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_has_an_unexpected_share() {
    let exporter = Exporter::start(&["--demo", "--demo.poll-interval", "1s"], &[]).await;
    exporter.wait_ready().await;
    let s = exporter.scrape_samples().await;
    let unexpected: f64 = find(&s, "ims_image_unexpected_members", &[])
        .iter()
        .map(|s| s.value)
        .sum();
    assert!(unexpected >= 1.0);
    assert!(!find(&s, "ims_image_info", &[("source", "discovery")]).is_empty());
    assert!(!find(&s, "ims_image_member_present", &[]).is_empty());
}
