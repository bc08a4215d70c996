//! The state the poller writes and the renderer reads.
//!
//! Each monitored image has a slot holding an immutable [`ImageState`] behind an
//! `ArcSwap`, replaced whole: by the poller when a poll ends (and when discovery or a
//! reload changes the image set), and once at start by the restore of the state file. A scrape takes one
//! [`Snapshot`] — the current `Arc` of every slot — and renders only from that, so it
//! never sees half an update and never waits for the poller.

#[cfg(test)]
mod alloc_budget;
mod changes;
pub mod events;
mod image;
mod incoming;
mod member_id;
mod members;
pub mod storage;
mod store;

pub use changes::{Attribution, ChangeEvent, ChangeLog, MemberCounts, MAX_CHANGES};
pub use image::{ChangeKind, ImageKey, ImageMeta, ImageState};
pub use incoming::{member_status, IncomingStatus, Offer};
pub use member_id::MemberIdText;
pub use members::{
    is_plain_label, label, Label, MemberRecord, MemberSet, MEMBER_TYPES, STATUSES, UNKNOWN,
};
pub use store::{
    CtsStatus, DiscoveryStatus, Slot, Snapshot, Store, TargetSlot, TargetStatus, TraceWindow,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Source;
    use crate::ims::error::Reason;
    use crate::ims::model::Member;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn key(id: &str) -> ImageKey {
        ImageKey {
            region: "r".into(),
            project_id: "p".into(),
            image_id: id.into(),
        }
    }

    fn meta() -> ImageMeta {
        ImageMeta {
            name: "n".into(),
            source: Source::Config,
        }
    }

    fn member(id: &str, status: &str, created: Option<&str>) -> Member {
        Member {
            member_id: id.into(),
            member_type: Some("project".into()),
            status: Some(status.into()),
            created_at: created.map(str::to_string),
            updated_at: None,
            image_id: None,
            schema: None,
            urn: None,
        }
    }

    #[test]
    fn bad_timestamp_keeps_member() {
        let set = MemberSet::from_api(vec![
            member("b", "accepted", Some("garbage")),
            member("a", "pending", Some("2023-08-23T04:07:52Z")),
        ]);
        assert_eq!(set.members.len(), 2);
        assert_eq!(set.members[0].member_id(), "a");
        assert_eq!(set.members[1].created_at(), None);
        assert_eq!(set.bad_timestamps, 1);
        assert_eq!(set.counts[&("project".into(), "accepted".into())], 1);
    }

    #[test]
    fn a_record_keeps_what_does_not_fit_inline() {
        let long_id = "ou-".to_string() + &"x".repeat(60);
        let urn = "organizations::6c031a41eefc480bb60f20c003891fcd:ou:o-1/ou-2";
        let r = MemberRecord::new(
            &long_id,
            Some("tenant"),
            Some("frozen"),
            Some(urn),
            Some(1.5),
            None,
        );
        assert_eq!(r.member_id(), long_id);
        assert_eq!(
            (r.member_type(), r.status(), r.urn()),
            ("tenant", "frozen", urn)
        );
        assert_eq!((r.created_at(), r.updated_at()), (Some(1.5), None));
        assert_eq!(r.type_label(), "tenant");
        let short = MemberRecord::new("a", None, Some(""), Some(""), None, Some(0.0));
        assert_eq!(short.member_id(), "a");
        assert_eq!(
            (short.member_type(), short.status(), short.urn()),
            ("unknown", "unknown", "")
        );
        assert_eq!(short.updated_at(), Some(0.0));
        // Exactly 32 bytes stay inline; the order is the IDs' byte order either way.
        let id32 = "f".repeat(32);
        let set = MemberSet::from_records(
            vec![
                r.clone(),
                short.clone(),
                MemberRecord::new(&id32, None, None, None, None, None),
            ],
            0,
        );
        let ids: Vec<String> = set
            .members
            .iter()
            .map(|m| m.member_id().to_string())
            .collect();
        assert_eq!(ids, ["a", id32.as_str(), long_id.as_str()]);
        assert_ne!(r, short);
        assert_eq!(r, r.clone());
    }

    use proptest::prelude::*;

    proptest! {
        /// A record gives back the ID and timestamps it was made from, however they are
        /// kept (bytes of a hex ID or the string; whole seconds or the exact value), and
        /// records sort and deduplicate as their IDs' strings do.
        #[test]
        fn a_record_gives_back_what_it_was_made_from(
            ids in prop::collection::vec(
                prop_oneof![
                    "[0-9a-f]{32}",
                    "[0-9a-fA-F]{32}",
                    "[0-9a-g]{31,33}",
                    "[0-9a-f]{0,40}",
                    "ou-[a-z0-9]{32}",
                ],
                1..12,
            ),
            times in prop::collection::vec(
                prop_oneof![
                    Just(None),
                    (0u32..u32::MAX).prop_map(|s| Some(f64::from(s))),
                    prop::num::f64::NORMAL.prop_map(Some),
                    prop_oneof![
                        Just(0.0),
                        Just(-1.0),
                        Just(1.5),
                        Just(4294967293.0),
                        Just(4294967294.0),
                        Just(4294967295.0),
                        Just(1e300),
                    ]
                    .prop_map(Some),
                ],
                2,
            ),
        ) {
            let records: Vec<MemberRecord> = ids
                .iter()
                .map(|id| MemberRecord::new(id, Some("project"), None, None, times[0], times[1]))
                .collect();
            for (r, id) in records.iter().zip(&ids) {
                prop_assert_eq!(&*r.member_id(), id.as_str());
                prop_assert_eq!((r.created_at(), r.updated_at()), (times[0], times[1]));
                // Equal fields are equal members, and only those.
                for (other, other_id) in records.iter().zip(&ids) {
                    prop_assert_eq!(r == other, id == other_id);
                }
                let later = MemberRecord::new(id, Some("project"), None, None, times[0], Some(-0.5));
                prop_assert_eq!(r == &later, r.updated_at() == Some(-0.5));
            }
            let set = MemberSet::from_records(records, 0);
            let mut expected = ids.clone();
            expected.sort();
            expected.dedup();
            let got: Vec<String> = set.members.iter().map(|m| m.member_id().to_string()).collect();
            prop_assert_eq!(got, expected);
        }
    }

    #[test]
    fn the_copy_listed_last_wins_whatever_the_size() {
        // An unstable sort picked by list size; check sizes on both sides of its
        // small-slice cut-off.
        for n in [2usize, 5, 20, 21, 100, 5000] {
            let mut listed: Vec<Member> = (0..n)
                .map(|i| member(&format!("m{:05}", i % (n / 2).max(1)), "pending", None))
                .collect();
            // The later copy of each ID says accepted.
            let mut seen = std::collections::HashSet::new();
            for m in listed.iter_mut() {
                if !seen.insert(m.member_id.clone()) {
                    m.status = Some("accepted".into());
                }
            }
            let set = MemberSet::from_api(listed);
            assert_eq!(set.members.len(), (n / 2).max(1), "n={n}");
            assert_eq!(set.duplicates, n - (n / 2).max(1), "n={n}");
            assert!(
                set.members.iter().all(|m| m.status() == "accepted"),
                "n={n}: the later copy wins"
            );
        }
    }

    #[test]
    fn failure_keeps_last_good_members() {
        let s = ImageState::new(key("i"), meta()).succeeded(
            MemberSet::from_api(vec![member("a", "accepted", None)]),
            BTreeMap::new(),
            10.0,
        );
        let f = s.failed(Reason::Http5xx, &[]).failed(Reason::Http5xx, &[]);
        assert_eq!(f.members, s.members);
        assert_eq!(f.last_poll_ok, Some(false));
        assert_eq!(f.last_success_unix, Some(10.0));
        assert_eq!(f.errors[&Reason::Http5xx], 2);
    }

    #[test]
    fn set_images_carries_state_and_drops_removed() {
        let store = Store::new();
        let slots = store.set_images(&[(key("a"), meta()), (key("b"), meta())]);
        slots[0].store(ImageState::new(key("a"), meta()).failed(Reason::Timeout, &[]));
        let (_, dropped) = store.replace_images(&[(key("a"), meta()), (key("c"), meta())]);
        let dropped: Vec<_> = dropped.iter().map(|s| s.key.image_id.to_string()).collect();
        assert_eq!(dropped, ["b"]);
        let snap = store.snapshot();
        let ids: Vec<_> = snap
            .images
            .iter()
            .map(|s| s.key.image_id.to_string())
            .collect();
        assert_eq!(ids, ["a", "c"]);
        assert_eq!(snap.images[0].last_poll_ok, Some(false));
        assert!(!store.ready());
    }

    #[test]
    fn ready_when_every_target_finished_a_cycle_and_stays_ready() {
        let store = Store::new();
        let t = |r: &str| (Arc::<str>::from(r), Arc::<str>::from("p"));
        let slots = store.set_targets(&[t("a"), t("b")]);
        store.cycle_finished(&slots[0], 1.0);
        assert!(!store.ready());
        store.cycle_finished(&slots[1], 3.0);
        assert!(store.ready());
        assert_eq!(store.snapshot().last_cycle_seconds(), Some(3.0));
        // A target added by a reload keeps its place; readiness is not lost.
        let slots = store.set_targets(&[t("a"), t("c")]);
        assert_eq!(slots[0].load().last_cycle_seconds, Some(1.0));
        assert!(store.ready());
    }
}
