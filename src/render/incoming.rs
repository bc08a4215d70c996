//! The families of images other tenants share with our projects (`incoming:`): per
//! target, each offered image with its owner and our member status, the counts by
//! status, the images whose owner no trusted entry matches, and how the listings go.
//! Written only for targets whose listing is on (`TargetStatus::incoming` is set), so a
//! config without `incoming:` exposes none of them.

use std::sync::Arc;

use crate::render::exposition::{Exposition, Kind};
use crate::state::{IncomingStatus, Offer, TargetStatus};

pub(super) fn write_incoming(w: &mut Exposition, targets: &[Arc<TargetStatus>]) {
    let listed: Vec<(&TargetStatus, &IncomingStatus)> = targets
        .iter()
        .filter_map(|t| t.incoming.as_ref().map(|i| (&**t, i)))
        .collect();
    if listed.is_empty() || w.stopped() {
        return;
    }
    write_offers(w, &listed);
    write_listings(w, &listed);
}

/// Each target's last good list, offer by offer.
fn offers<'s>(
    listed: &'s [(&'s TargetStatus, &'s IncomingStatus)],
) -> impl Iterator<Item = (&'s TargetStatus, &'s Offer)> + 's {
    listed
        .iter()
        .flat_map(|(t, i)| i.offers.iter().flat_map(|o| o.iter()).map(move |o| (*t, o)))
}

/// Per offered image: what it is; per target: how many by status; per image whose
/// owner is not trusted: one series, whatever its status.
fn write_offers(w: &mut Exposition, listed: &[(&TargetStatus, &IncomingStatus)]) {
    w.family(
        "ims_incoming_image_info",
        "One series per image another tenant shares with the project (from the last good listing), with its name, owner and our member status; value is always 1.",
        Kind::Gauge,
    );
    for (t, o) in offers(listed) {
        w.target_series(&t.region, &t.project_id)
            .label("image_id", &o.image_id)
            .label("image_name", &o.image_name)
            .label("owner", &o.owner)
            .label("member_status", o.member_status)
            .value(1.0);
    }
    w.family(
        "ims_incoming_images",
        "Images other tenants share with the project by our member status (pending, accepted, rejected), from the last good listing.",
        Kind::Gauge,
    );
    // Only a good listing says how many: none before the first.
    for (t, i) in listed.iter().filter(|(_, i)| i.offers.is_some()) {
        for (status, n) in i.counts() {
            w.target_series(&t.region, &t.project_id)
                .label("member_status", status)
                .int(n as u64);
        }
    }
    w.family(
        "ims_incoming_image_untrusted",
        "1 for each image shared with the project whose owner no trusted owner entry matches, whatever our member status.",
        Kind::Gauge,
    );
    for (t, o) in offers(listed).filter(|(_, o)| !o.trusted) {
        w.target_series(&t.region, &t.project_id)
            .label("image_id", &o.image_id)
            .label("owner", &o.owner)
            .label("member_status", o.member_status)
            .value(1.0);
    }
}

/// Per target: whether the last listing succeeded, and when one last did.
fn write_listings(w: &mut Exposition, listed: &[(&TargetStatus, &IncomingStatus)]) {
    w.family(
        "ims_incoming_poll_success",
        "1 if the last listing of the images shared with the project succeeded, 0 if it failed (the last good list is still served).",
        Kind::Gauge,
    );
    for (t, i) in listed {
        if let Some(ok) = i.ok {
            w.target_series(&t.region, &t.project_id).int(ok as u64);
        }
    }
    w.family(
        "ims_incoming_last_success_timestamp_seconds",
        "Unix time of the last good listing of the images shared with the project.",
        Kind::Gauge,
    );
    for (t, i) in listed {
        if let Some(at) = i.last_success_unix {
            w.target_series(&t.region, &t.project_id).value(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::exposition::Format;

    fn target(incoming: Option<IncomingStatus>) -> Arc<TargetStatus> {
        Arc::new(TargetStatus {
            region: "r".into(),
            project_id: "p".into(),
            discovery: None,
            last_cycle_seconds: None,
            discovered: None,
            cts: None,
            incoming,
        })
    }

    fn render(targets: &[Arc<TargetStatus>]) -> String {
        let mut w = Exposition::new(Format::Text);
        write_incoming(&mut w, targets);
        w.finish()
    }

    #[test]
    fn nothing_without_a_listing() {
        assert_eq!(render(&[target(None)]), "");
    }

    #[test]
    fn offers_counts_untrusted_and_listing_health() {
        let offer = |id: &str, status: &'static str, trusted: bool| Offer {
            image_id: id.into(),
            image_name: format!("n\"{id}"),
            owner: "o".into(),
            member_status: status,
            trusted,
            first_seen: 1.0,
        };
        let text = render(&[target(Some(IncomingStatus {
            ok: Some(false),
            last_success_unix: Some(5.0),
            offers: Some(Arc::new(vec![
                offer("a", "pending", false),
                offer("b", "accepted", true),
            ])),
            restored: false,
        }))]);
        for line in [
            "ims_incoming_image_info{region=\"r\",project_id=\"p\",image_id=\"a\",image_name=\"n\\\"a\",owner=\"o\",member_status=\"pending\"} 1.0",
            "ims_incoming_images{region=\"r\",project_id=\"p\",member_status=\"pending\"} 1",
            "ims_incoming_images{region=\"r\",project_id=\"p\",member_status=\"accepted\"} 1",
            "ims_incoming_images{region=\"r\",project_id=\"p\",member_status=\"rejected\"} 0",
            "ims_incoming_image_untrusted{region=\"r\",project_id=\"p\",image_id=\"a\",owner=\"o\",member_status=\"pending\"} 1.0",
            "ims_incoming_poll_success{region=\"r\",project_id=\"p\"} 0",
            "ims_incoming_last_success_timestamp_seconds{region=\"r\",project_id=\"p\"} 5.0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        assert_eq!(text.matches("ims_incoming_image_untrusted{").count(), 1);
        // Before a good listing: no count is made up.
        let text = render(&[target(Some(IncomingStatus {
            ok: Some(false),
            ..IncomingStatus::default()
        }))]);
        assert!(!text.contains("ims_incoming_images{"), "{text}");
        assert!(text.contains("ims_incoming_poll_success{region=\"r\",project_id=\"p\"} 0"));
    }
}
