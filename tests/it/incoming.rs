//! Images shared with us (`incoming:`, docs/configuration.md#images-shared-with-us):
//! the real binary lists the images the fake offers to the test project, per member
//! status and page after page, judges each owner against the trusted owners (by ID,
//! glob and file, the file re-read at every listing), audits what changed, keeps the
//! last good list when a listing is malformed, and diffs the first listing after a
//! restart with `--storage.path`.

use crate::support::*;
use ims_exporter::fake_ims::Fault;

const IMG: &str = "d164b5df-1bc3-4c3f-893e-3e471fd16e64";
const TRUSTED: &str = "ab12000000000000000000000000aaaa";
const GLOBBED: &str = "cd340000000000000000000000000bbb";
const FROM_FILE: &str = "ef560000000000000000000000000ccc";
const STRANGER: &str = "99990000000000000000000000000ddd";

/// The `i`th offered image's ID.
fn offered(i: usize) -> String {
    format!("0ffe0000-0000-4000-8000-{i:012x}")
}

/// One image of ours (polled hourly) and `incoming:` listed every second, trusting
/// [`TRUSTED`] by ID, `cd34*` by glob, and the entries of a file.
async fn fleet() -> Fleet {
    let fleet = Fleet::new().await.shared(&[IMG]).images(&[IMG]);
    let file = fleet.dir.path().join("trusted-owners");
    std::fs::write(&file, format!("# owners we trust\n{FROM_FILE}\n")).expect("trusted file");
    fleet.config(&format!(
        "poll_interval: 1h\nincoming:\n  interval: 1s\n  trusted_owners: [{TRUSTED}, \"cd34*\"]\n  trusted_owners_file: {}",
        file.display()
    ))
}

async fn samples(exporter: &Exporter) -> Vec<Sample> {
    exporter.scrape_samples().await
}

/// Waits until the exporter has listed `n` more times than the fake counted `before`.
async fn wait_listings(fleet: &Fleet, before: u64, n: u64) {
    // Three statuses, one request each (more for pages): a listing is at least three.
    wait_for(&format!("{n} more listings"), async || {
        (fleet.fake.state.shared_list_requests() >= before + 3 * n).then_some(())
    })
    .await
}

fn untrusted(samples: &[Sample], image: &str) -> Option<String> {
    find(
        samples,
        "ims_incoming_image_untrusted",
        &[("image_id", image)],
    )
    .first()
    .map(|s| s.label("member_status").to_string())
}

#[tokio::test]
async fn offers_are_listed_by_status_and_judged_by_id_glob_and_file() {
    let fleet = fleet().await;
    let state = &fleet.fake.state;
    state.offer_image(PROJECT, &offered(1), "from-trusted", TRUSTED, "accepted");
    state.offer_image(PROJECT, &offered(2), "from-glob", GLOBBED, "pending");
    state.offer_image(PROJECT, &offered(3), "from-file", FROM_FILE, "rejected");
    state.offer_image(PROJECT, &offered(4), "from-stranger", STRANGER, "pending");
    let exporter = fleet.start(&[]).await;
    let s = wait_for("the first listing", async || {
        let s = samples(&exporter).await;
        (value(&s, "ims_incoming_poll_success", &[("project_id", PROJECT)]) == Some(1.0))
            .then_some(s)
    })
    .await;
    for (status, n) in [("pending", 2.0), ("accepted", 1.0), ("rejected", 1.0)] {
        assert_eq!(
            value(&s, "ims_incoming_images", &[("member_status", status)]),
            Some(n),
            "{status}"
        );
    }
    let info = find(&s, "ims_incoming_image_info", &[("image_id", &offered(1))]);
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].label("owner"), TRUSTED);
    assert_eq!(info[0].label("image_name"), "from-trusted");
    assert_eq!(info[0].label("member_status"), "accepted");
    // Only the stranger is untrusted.
    assert_eq!(find(&s, "ims_incoming_image_untrusted", &[]).len(), 1);
    assert_eq!(untrusted(&s, &offered(4)).as_deref(), Some("pending"));
    assert!(value(&s, "ims_incoming_last_success_timestamp_seconds", &[]).unwrap_or(0.0) > 0.0);
    let requests: f64 = find(
        &s,
        "ims_api_requests_total",
        &[("operation", "list_shared_images")],
    )
    .iter()
    .map(|s| s.value)
    .sum();
    assert!(requests >= 3.0, "one listing per status, counted");
    assert!(exporter.logs().contains("event=incoming_baseline"));

    // The file is re-read at every listing: the stranger is trusted once it is in it.
    let file = fleet.dir.path().join("trusted-owners");
    std::fs::write(&file, format!("{FROM_FILE}\n{STRANGER}\n")).expect("rewrite");
    wait_for("the stranger trusted", async || {
        untrusted(&samples(&exporter).await, &offered(4))
            .is_none()
            .then_some(())
    })
    .await;
    // An unreadable file keeps the last good entries.
    std::fs::remove_file(&file).expect("remove");
    let before = fleet.fake.state.shared_list_requests();
    wait_listings(&fleet, before, 2).await;
    let s = samples(&exporter).await;
    assert!(
        untrusted(&s, &offered(4)).is_none(),
        "last good entries kept"
    );
    assert!(untrusted(&s, &offered(3)).is_none());
    drop(exporter);
    fleet.stop().await;
}

#[tokio::test]
async fn a_new_offer_is_audited_and_a_malformed_listing_removes_nothing() {
    let fleet = fleet().await;
    let state = &fleet.fake.state;
    state.offer_image(PROJECT, &offered(1), "trusted", TRUSTED, "accepted");
    let exporter = fleet.start(&[]).await;
    wait_for("the baseline", async || {
        exporter
            .logs()
            .contains("event=incoming_baseline")
            .then_some(())
    })
    .await;
    // A stranger offers an image: audited, untrusted.
    state.offer_image(PROJECT, &offered(2), "lure", STRANGER, "pending");
    let line = wait_for("the incoming_added line", async || {
        exporter
            .log_lines()
            .into_iter()
            .find(|l| l.contains("event=incoming_added"))
    })
    .await;
    for needle in [
        offered(2),
        format!("owner={STRANGER}"),
        "trusted=false".into(),
        "status=pending".into(),
    ] {
        assert!(line.contains(&needle), "{needle} not in {line}");
    }
    // We accept it: a status change.
    state.set_offer_status(PROJECT, &offered(2), "accepted");
    wait_for("the incoming_status_changed line", async || {
        exporter
            .logs()
            .contains("event=incoming_status_changed")
            .then_some(())
    })
    .await;
    // A 200 without the list: the last good list stays, nothing is reported removed.
    state.set_shared_fault(PROJECT, Some(Fault::MissingList));
    wait_for("the failed listing", async || {
        (value(&samples(&exporter).await, "ims_incoming_poll_success", &[]) == Some(0.0))
            .then_some(())
    })
    .await;
    let s = samples(&exporter).await;
    assert_eq!(
        find(&s, "ims_incoming_image_info", &[]).len(),
        2,
        "the last good list"
    );
    assert!(!exporter.logs().contains("event=incoming_removed"));
    // Withdrawn while the listing works again: now it is removed.
    state.set_shared_fault(PROJECT, None);
    state.withdraw_offer(PROJECT, &offered(2));
    wait_for("the incoming_removed line", async || {
        exporter
            .logs()
            .contains("event=incoming_removed")
            .then_some(())
    })
    .await;
    drop(exporter);
    fleet.stop().await;
}

#[tokio::test]
async fn a_restart_with_storage_diffs_the_first_listing() {
    let fleet = fleet().await;
    let state = &fleet.fake.state;
    state.offer_image(PROJECT, &offered(1), "trusted", TRUSTED, "accepted");
    let dir = fleet.dir.path().join("state");
    let args = ["--storage.path", dir.to_str().expect("UTF-8 path")];
    let exporter = fleet.start(&args).await;
    wait_for("the first listing", async || {
        (value(&samples(&exporter).await, "ims_incoming_poll_success", &[]) == Some(1.0))
            .then_some(())
    })
    .await;
    assert!(exporter.terminate().await.success());
    // While it is down, a stranger offers an image.
    state.offer_image(PROJECT, &offered(2), "while-down", STRANGER, "pending");
    let exporter = fleet.start(&args).await;
    let line = wait_for("the incoming_added line after the restart", async || {
        exporter
            .log_lines()
            .into_iter()
            .find(|l| l.contains("event=incoming_added"))
    })
    .await;
    assert!(line.contains(&offered(2)), "{line}");
    assert!(
        !exporter.logs().contains("event=incoming_baseline"),
        "diffed, not a baseline"
    );
    drop(exporter);
    fleet.stop().await;
}

#[tokio::test]
async fn twelve_hundred_offers_over_several_pages() {
    let fleet = fleet().await.config("page_size: 100");
    let state = &fleet.fake.state;
    for i in 0..1200 {
        let status = ["pending", "accepted", "rejected"][i % 3];
        let owner = if i % 2 == 0 { TRUSTED } else { STRANGER };
        state.offer_image(PROJECT, &offered(i), &format!("offer-{i}"), owner, status);
    }
    let exporter = fleet.start(&[]).await;
    let s = wait_for("the listing", async || {
        let s = samples(&exporter).await;
        (value(&s, "ims_incoming_poll_success", &[]) == Some(1.0)).then_some(s)
    })
    .await;
    assert_eq!(find(&s, "ims_incoming_image_info", &[]).len(), 1200);
    assert_eq!(find(&s, "ims_incoming_image_untrusted", &[]).len(), 600);
    for status in ["pending", "accepted", "rejected"] {
        assert_eq!(
            value(&s, "ims_incoming_images", &[("member_status", status)]),
            Some(400.0)
        );
    }
    drop(exporter);
    fleet.stop().await;
}

#[tokio::test]
async fn a_listing_over_the_cap_fails_too_large_and_keeps_nothing_new() {
    let fleet = fleet().await.config("max_incoming_images: 5");
    let state = &fleet.fake.state;
    for i in 0..6 {
        state.offer_image(PROJECT, &offered(i), "x", STRANGER, "pending");
    }
    let exporter = fleet.start(&[]).await;
    wait_for("the failed listing", async || {
        (value(&samples(&exporter).await, "ims_incoming_poll_success", &[]) == Some(0.0))
            .then_some(())
    })
    .await;
    assert!(exporter.logs().contains("max_incoming_images"));
    assert!(find(&samples(&exporter).await, "ims_incoming_image_info", &[]).is_empty());
    drop(exporter);
    fleet.stop().await;
}
