//! Images shared with us (`incoming:`): every `incoming.interval`, each target lists
//! the images other tenants offer to its project, one listing per member status, all
//! or nothing; judges each owner against the trusted owners (files re-read, the last
//! good entries kept); and audits what changed against the last good listing
//! (`incoming_added`, `incoming_removed`, `incoming_status_changed`). The first listing
//! is a baseline; a listing restored from the state file is diffed. A failed listing
//! keeps the last good one and reports nothing as removed.

use std::collections::HashMap;
use std::sync::Arc;

use super::poller::{Poller, TargetRun};
use crate::allowlist::{is_unexpected, Entry};
use crate::ims::shared::{OfferedImage, MEMBER_STATUSES};
use crate::ims::ApiError;
use crate::state::{member_status, ChangeEvent, ChangeKind, ImageKey, IncomingStatus, Offer};
use crate::timestamp::now_unix;

impl Poller {
    /// Lists the images offered to the target's project. Returns true on success (and
    /// for a target that lists none).
    pub(super) async fn list_incoming(&self, run: &TargetRun) -> bool {
        let target = &run.target.config;
        let Some(trusted) = &target.incoming else {
            return true;
        };
        let listed = match self.list_all(run).await {
            Ok(listed) => listed,
            Err(e) => {
                failed(run, &e);
                return false;
            }
        };
        let entries = self.plan.allowlist(trusted).current().await;
        let previous = run.slot.load().incoming.clone().unwrap_or_default();
        let now = now_unix();
        let offers = judged(listed, &entries, previous.offers.as_deref(), now);
        let key = |image_id: &str| ImageKey {
            region: target.region.as_str().into(),
            project_id: target.project_id().as_str().into(),
            image_id: image_id.into(),
        };
        match previous.offers.as_deref() {
            Some(old) => {
                let changes = diff(old, &offers, now, &key);
                for c in &changes {
                    log_change(c);
                }
                self.store.record_changes(changes);
            }
            None => tracing::info!(
                event = "incoming_baseline",
                region = %target.region, project_id = %target.project_id(),
                images = offers.len(),
                untrusted = offers.iter().filter(|o| !o.trusted).count(),
                "images shared with the project: baseline"
            ),
        }
        // Built once: the update may run more than once when it races another.
        let offers = Arc::new(offers);
        run.slot.update(|s| {
            s.incoming = Some(IncomingStatus {
                ok: Some(true),
                last_success_unix: Some(now),
                offers: Some(offers.clone()),
                restored: false,
            });
        });
        self.store.events_polled();
        true
    }
}

impl Poller {
    /// One listing per status, within `max_incoming_images` in all.
    async fn list_all(
        &self,
        run: &TargetRun,
    ) -> Result<Vec<(OfferedImage, &'static str)>, ApiError> {
        let config = &self.plan.config;
        let mut listed: Vec<(OfferedImage, &'static str)> = Vec::new();
        for status in MEMBER_STATUSES {
            let cap = config.max_incoming_images.saturating_sub(listed.len());
            let images = self
                .plan
                .client
                .list_shared_images(&run.target.api, status, config.page_size, cap)
                .await?;
            listed.extend(images.into_iter().map(|i| (i, status)));
        }
        Ok(listed)
    }
}

/// A failed listing: logged; the last good list stays and nothing is reported removed.
fn failed(run: &TargetRun, e: &ApiError) {
    let target = &run.target.config;
    tracing::warn!(
        region = %target.region, project_id = %target.project_id(),
        reason = %e.reason(), request_id = e.request_id().unwrap_or("-"), error = %e,
        "listing the images shared with the project failed; keeping the last good list"
    );
    run.slot.update(|s| {
        let mut status = s.incoming.clone().unwrap_or_default();
        status.ok = Some(false);
        s.incoming = Some(status);
    });
}

/// The listed images as offers, sorted by ID: trusted when an entry matches the
/// owner, first seen when the previous list had them (else now).
fn judged(
    listed: Vec<(OfferedImage, &'static str)>,
    entries: &[Entry],
    previous: Option<&Vec<Offer>>,
    now: f64,
) -> Vec<Offer> {
    let seen: HashMap<&str, f64> = previous
        .into_iter()
        .flatten()
        .map(|o| (o.image_id.as_str(), o.first_seen))
        .collect();
    let mut offers: Vec<Offer> = listed
        .into_iter()
        .map(|(image, status)| Offer {
            first_seen: seen.get(image.id.as_str()).copied().unwrap_or(now),
            trusted: !is_unexpected(entries, &image.owner, ""),
            member_status: member_status(status),
            image_id: image.id,
            image_name: image.name,
            owner: image.owner,
        })
        .collect();
    offers.sort_by(|a, b| a.image_id.cmp(&b.image_id));
    // An image listed under two statuses (a status changed between two listings)
    // is kept once, in the later listing's status.
    offers.dedup_by(|later, earlier| {
        if later.image_id == earlier.image_id {
            *earlier = later.clone();
            true
        } else {
            false
        }
    });
    offers
}

/// What changed from `old` to `new` (both sorted by image ID), as change events.
fn diff(
    old: &[Offer],
    new: &[Offer],
    now: f64,
    key: &dyn Fn(&str) -> ImageKey,
) -> Vec<ChangeEvent> {
    let before: HashMap<&str, &Offer> = old.iter().map(|o| (o.image_id.as_str(), o)).collect();
    let after: HashMap<&str, &Offer> = new.iter().map(|o| (o.image_id.as_str(), o)).collect();
    let mut out = Vec::new();
    for o in new {
        match before.get(o.image_id.as_str()) {
            None => out.push(event(ChangeKind::IncomingAdded, o, None, now, key)),
            Some(was) if was.member_status != o.member_status => out.push(event(
                ChangeKind::IncomingStatusChanged,
                o,
                Some(was.member_status),
                now,
                key,
            )),
            Some(_) => {}
        }
    }
    for o in old
        .iter()
        .filter(|o| !after.contains_key(o.image_id.as_str()))
    {
        out.push(event(ChangeKind::IncomingRemoved, o, None, now, key));
    }
    out
}

fn event(
    kind: ChangeKind,
    o: &Offer,
    old_status: Option<&'static str>,
    now: f64,
    key: &dyn Fn(&str) -> ImageKey,
) -> ChangeEvent {
    ChangeEvent {
        time_unix: now,
        kind,
        key: key(&o.image_id),
        image_name: o.image_name.as_str().into(),
        member_id: String::new(),
        member_type: crate::state::Label::Borrowed(""),
        status: crate::state::Label::Borrowed(o.member_status),
        old_status: old_status.map(crate::state::Label::Borrowed),
        unexpected: !o.trusted,
        counts: None,
        by: None,
        owner: Some(o.owner.clone()),
    }
}

/// One audit line per change to an image shared with us.
fn log_change(c: &ChangeEvent) {
    let old_status = c.old_status.as_deref().unwrap_or("");
    tracing::info!(
        event = c.kind.as_str(),
        region = %c.key.region,
        project_id = %c.key.project_id,
        image_id = %c.key.image_id,
        image_name = %c.image_name,
        owner = c.owner.as_deref().unwrap_or(""),
        status = %c.status,
        old_status,
        trusted = !c.unexpected,
        "image shared with the project changed"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(id: &str, owner: &str, status: &'static str) -> (OfferedImage, &'static str) {
        (
            OfferedImage {
                id: id.into(),
                name: format!("name-{id}"),
                owner: owner.into(),
            },
            status,
        )
    }

    fn key(id: &str) -> ImageKey {
        ImageKey {
            region: "r".into(),
            project_id: "p".into(),
            image_id: id.into(),
        }
    }

    #[test]
    fn owners_are_judged_and_changes_found() {
        let trusted = [Entry::parse("ab12*").unwrap()];
        let first = judged(
            vec![
                offer("b", "ab12cd", "pending"),
                offer("a", "ffff", "accepted"),
            ],
            &trusted,
            None,
            1.0,
        );
        assert_eq!(
            first
                .iter()
                .map(|o| (o.image_id.as_str(), o.trusted))
                .collect::<Vec<_>>(),
            [("a", false), ("b", true)]
        );
        let second = judged(
            vec![
                offer("b", "ab12cd", "accepted"),
                offer("c", "eeee", "pending"),
            ],
            &trusted,
            Some(&first),
            2.0,
        );
        assert_eq!(second[0].first_seen, 1.0, "b was seen before");
        assert_eq!(second[1].first_seen, 2.0);
        let kinds: Vec<(&str, String)> = diff(&first, &second, 2.0, &key)
            .iter()
            .map(|c| (c.kind.as_str(), c.key.image_id.to_string()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("incoming_status_changed", "b".to_string()),
                ("incoming_added", "c".to_string()),
                ("incoming_removed", "a".to_string())
            ]
        );
    }

    #[test]
    fn an_image_in_two_listings_is_kept_once_in_the_later_status() {
        let offers = judged(
            vec![offer("a", "o", "pending"), offer("a", "o", "accepted")],
            &[],
            None,
            1.0,
        );
        assert_eq!(offers.len(), 1);
        assert_eq!(offers[0].member_status, "accepted");
        assert!(!offers[0].trusted, "no entry: nobody is trusted");
    }
}
