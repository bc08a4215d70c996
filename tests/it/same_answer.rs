//! An answer byte for byte the last good one is not decoded again (src/ims/listing.rs):
//! what a user sees must stay exactly what decoding it would show, whatever changed
//! beside the answer (the allowlist, a failed poll between) or in another of its pages.

use crate::support::*;
use ims_exporter::fake_ims::Fault;

const IMG: &str = "d164b5df-1bc3-4c3f-893e-3e471fd16e64";

fn unexpected(s: &[Sample]) -> Option<f64> {
    value(s, "ims_image_unexpected_members", &[("image_id", IMG)])
}

fn changes(s: &[Sample], change: &str) -> f64 {
    let labels = [("image_id", IMG), ("change", change)];
    value(s, "ims_member_changes_total", &labels).unwrap_or(0.0)
}

/// The samples once the audit has counted one `change`.
async fn once_changed(exporter: &Exporter, change: &str) -> Vec<Sample> {
    wait_for(&format!("one {change} member"), async || {
        let s = exporter.scrape_samples().await;
        (changes(&s, change) == 1.0).then_some(s)
    })
    .await
}

/// The allowlist narrowed while the API failed (the kept list is judged against it),
/// then widened back as the API answers the very list it answered before: the share is
/// allowed again, not left unexpected by the judgement made during the failure.
#[tokio::test(flavor = "multi_thread")]
async fn an_unchanged_answer_is_judged_against_the_allowlist_in_force() {
    let fleet = Fleet::new().await;
    let file = fleet.dir.path().join("allowed.txt");
    std::fs::write(&file, format!("{MEMBER}\n")).unwrap();
    let fleet = fleet.images(&[IMG]).config(&format!(
        "allowed_members_file: {}\nretry:\n  max_attempts: 1",
        file.display()
    ));
    share(&fleet.fake, PROJECT, IMG, MEMBER, "accepted");
    let exporter = fleet.start(&[]).await;
    assert_eq!(unexpected(&exporter.scrape_samples().await), Some(0.0));

    fleet.fake.state.set_fault(IMG, Some(Fault::Status(500)));
    std::fs::write(&file, "# nobody\n").unwrap();
    wait_for("the failed poll to judge the kept list", async || {
        let s = exporter.scrape_samples().await;
        (unexpected(&s) == Some(1.0)).then_some(())
    })
    .await;

    std::fs::write(&file, format!("{MEMBER}\n")).unwrap();
    fleet.fake.state.set_fault(IMG, None);
    wait_for("the same answer, allowed again", async || {
        let s = exporter.scrape_samples().await;
        let polled = value(&s, "ims_image_poll_success", &[("image_id", IMG)]) == Some(1.0);
        (polled && unexpected(&s) == Some(0.0)).then_some(())
    })
    .await;
    fleet.stop().await;
}

/// A listing of two pages where only the second changed: the first, the same bytes as
/// before, still counts with all its members (nothing "removed"), and the change is
/// seen.
#[tokio::test(flavor = "multi_thread")]
async fn a_change_on_a_later_page_keeps_the_unchanged_pages_members() {
    let fleet = Fleet::new().await.images(&[IMG]).config("page_size: 2");
    for i in 1..=3 {
        share(&fleet.fake, PROJECT, IMG, &member_id(i), "accepted");
    }
    let exporter = fleet.start(&[]).await;
    assert_eq!(unexpected(&exporter.scrape_samples().await), Some(3.0));

    // Sorted last: the first page (members 1 and 2) keeps its bytes.
    share(&fleet.fake, PROJECT, IMG, &member_id(4), "accepted");
    let s = once_changed(&exporter, "added").await;
    assert_eq!(unexpected(&s), Some(4.0));
    assert_eq!(changes(&s, "removed"), 0.0);
    let listed = find(&s, "ims_image_member_unexpected", &[("image_id", IMG)]);
    assert_eq!(listed.len(), 4, "every member, of both pages");

    // And back: the second page changes again, the first still does not.
    fleet.fake.state.remove_member(PROJECT, IMG, &member_id(4));
    let s = once_changed(&exporter, "removed").await;
    assert_eq!(unexpected(&s), Some(3.0));
    assert_eq!(changes(&s, "added"), 1.0);
    fleet.stop().await;
}
