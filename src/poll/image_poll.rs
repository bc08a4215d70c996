//! One image's poll: fetch what its config asks for (the member list, each watched
//! member), all or nothing; check the member caps; evaluate the allowlist; audit the
//! changes against the last good list; store the result. A failure keeps the last good
//! list and says why.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::allowlist::LiveAllowlist;
use crate::config::ImageConfig;
use crate::ims::client::MemberCap;
use crate::ims::listing::{Listed, ListingPrint};
use crate::ims::model::MemberRef;
use crate::ims::{ApiError, ImsClient, Member};
use crate::poll::audit;
use crate::poll::events::gate::PollGate;
use crate::poll::plan::LiveTarget;
use crate::state::{Attribution, ImageState, MemberRecord, MemberSet, Slot, Store};
use crate::timestamp::now_unix;

/// One image to poll: its target, its config, its allowlist and its slot.
pub(super) struct ImageJob {
    pub(super) target: Arc<LiveTarget>,
    pub(super) image: ImageConfig,
    /// The image's allowlist as polls apply it (files re-read).
    pub(super) allowlist: LiveAllowlist,
    pub(super) slot: Arc<Slot>,
    /// One poll of the image at a time, scheduled or triggered by an event.
    pub(super) gate: Arc<PollGate>,
}

/// The member caps (`max_members_per_image`, `max_members_total`) and what they are
/// checked against.
pub(super) struct Limits {
    pub(super) store: Arc<Store>,
    pub(super) per_image: usize,
    pub(super) total: usize,
    pub(super) commit: Arc<Mutex<()>>,
}

impl Limits {
    /// The most members this image may have now: its own cap, or what the fleet-wide
    /// cap leaves beside the other images' members.
    fn cap(&self, held_by_image: usize) -> MemberCap {
        let others = self.store.members_held().saturating_sub(held_by_image);
        let room = self.total.saturating_sub(others);
        if room < self.per_image {
            MemberCap {
                limit: room,
                setting: "max_members_total",
            }
        } else {
            MemberCap {
                limit: self.per_image,
                setting: "max_members_per_image",
            }
        }
    }
}

/// What the member list's fetch found.
enum Fetched {
    /// A new list (or only the watched members), with the answer's print.
    New(MemberSet, Option<ListingPrint>),
    /// Byte for byte the answer of the known list.
    Same,
}

/// Fetches what the image's config asks for: the member list, each watched member.
/// All or nothing: the first error fails the whole poll of the image. `known`: the
/// answer the last good list came from.
async fn fetch(
    client: &ImsClient,
    job: &ImageJob,
    page_size: u32,
    cap: MemberCap,
    known: Option<&ListingPrint>,
) -> Result<(Fetched, BTreeMap<String, bool>), ApiError> {
    let (api, image) = (&job.target.api, &job.image);
    let mut bad_timestamps = 0;
    let listed = if image.list_members {
        let mut record = |m: &MemberRef<'_>| {
            let (record, bad) = MemberRecord::from_ref(m);
            bad_timestamps += bad;
            record
        };
        Some(
            client
                .list_members(api, &image.id, page_size, cap, known, &mut record)
                .await?,
        )
    } else {
        None
    };
    let mut watched = BTreeMap::new();
    let mut found: Vec<Member> = Vec::new();
    for member_id in &image.watch_members {
        let member = client.get_member(api, &image.id, member_id).await?;
        watched.insert(member_id.to_string(), member.is_some());
        found.extend(member);
    }
    let fetched = match listed {
        Some(Listed::Same) => Fetched::Same,
        Some(Listed::Changed(records, print)) => Fetched::New(
            MemberSet::from_records(records, bad_timestamps),
            Some(print),
        ),
        None => Fetched::New(
            MemberSet {
                complete: false,
                ..MemberSet::from_api(found)
            },
            None,
        ),
    };
    Ok((fetched, watched))
}

/// Polls one image. Its log lines carry its region, project and image through one
/// span, made only for a line that is written (made, entered and closed for every poll,
/// it was a twentieth of the poll's CPU); the audit lines, which name the image
/// themselves, are written outside it.
/// `by`: the trace that asked for the poll, which the changes it finds carry.
pub(super) async fn poll_image(
    client: &ImsClient,
    job: &ImageJob,
    page_size: u32,
    limits: &Limits,
    by: Option<Arc<Attribution>>,
) -> bool {
    let span = || {
        tracing::info_span!(
            "image_poll",
            region = %job.target.config.region,
            project_id = %job.target.config.project_id(),
            image_id = %job.image.id,
        )
    };
    let started = Instant::now();
    let Some(good) = fetch_and_judge(client, job, page_size, limits, &span).await else {
        return false;
    };
    commit(job, limits, good, &span, started, by)
}

/// A complete, well-formed answer, judged against the allowlist in force.
struct Good {
    previous: Arc<ImageState>,
    set: Arc<MemberSet>,
    listing: Option<Arc<ListingPrint>>,
    watched: BTreeMap<String, bool>,
    entries: Arc<Vec<crate::allowlist::Entry>>,
}

/// Fetches and judges the image; a failure is logged and stored (the last good list
/// stays): `None`.
async fn fetch_and_judge(
    client: &ImsClient,
    job: &ImageJob,
    page_size: u32,
    limits: &Limits,
    span: &(dyn Fn() -> tracing::Span + Sync),
) -> Option<Good> {
    let entries = job.allowlist.current().await;
    let before = job.slot.load();
    let known = before
        .listing
        .as_deref()
        .filter(|_| before.members.is_some());
    let cap = limits.cap(before.member_count());
    let result = fetch(client, job, page_size, cap, known).await;
    let previous = job.slot.load();
    match result {
        Ok((fetched, watched)) => {
            let (set, listing) = match fetched {
                Fetched::New(set, print) => (Arc::new(set.evaluate(&entries)), print.map(Arc::new)),
                // Only a known answer is the same, and `before` holds its list.
                Fetched::Same => (before.members_judged(&entries)?, before.listing.clone()),
            };
            warn_about(&set, &watched, &previous, span);
            Some(Good {
                previous,
                set,
                listing,
                watched,
                entries,
            })
        }
        Err(e) => {
            span().in_scope(|| {
                tracing::warn!(
                    reason = %e.reason(), request_id = e.request_id().unwrap_or("-"), error = %e,
                    "poll failed; serving the last good member list"
                )
            });
            job.slot.store(previous.failed(e.reason(), &entries));
            None
        }
    }
}

/// Stores a good poll, unless it would pass `max_members_total`. Polls of several
/// images end at once: the fleet-wide cap is checked again as the result is stored,
/// one image at a time.
fn commit(
    job: &ImageJob,
    limits: &Limits,
    good: Good,
    span: &dyn Fn() -> tracing::Span,
    started: Instant,
    by: Option<Arc<Attribution>>,
) -> bool {
    let _commit = lock(&limits.commit);
    let Good {
        previous,
        set,
        listing,
        watched,
        entries,
    } = good;
    let others = limits
        .store
        .members_held()
        .saturating_sub(previous.member_count());
    if others + set.members.len() > limits.total {
        let e = MemberCap {
            limit: limits.total.saturating_sub(others),
            setting: "max_members_total",
        }
        .exceeded(None);
        span().in_scope(|| {
            tracing::warn!(reason = %e.reason(), error = %e, "poll failed; serving the last good member list")
        });
        job.slot.store(previous.failed(e.reason(), &entries));
        return false;
    }
    let mut next = succeeded(&previous, set, watched, &limits.store, by);
    next.listing = listing;
    next.judged_with = Some(entries);
    if tracing::enabled!(tracing::Level::DEBUG) {
        span().in_scope(|| {
            tracing::debug!(
                members = next.member_count(),
                seconds = started.elapsed().as_secs_f64(),
                "image polled"
            )
        });
    }
    job.slot.store(next);
    true
}

/// What a good list says that deserves a warning: duplicate IDs, unparseable
/// timestamps, a watched member that is not (or no longer) shared.
fn warn_about(
    set: &MemberSet,
    watched: &BTreeMap<String, bool>,
    previous: &ImageState,
    span: &dyn Fn() -> tracing::Span,
) {
    if set.duplicates > 0 {
        span().in_scope(|| {
            tracing::warn!(
                count = set.duplicates,
                "member IDs listed more than once; the copy listed last is kept"
            )
        });
    }
    if set.bad_timestamps > 0 {
        span().in_scope(|| {
            tracing::warn!(
                count = set.bad_timestamps,
                "unparseable member timestamps; those members are exported without them"
            )
        });
    }
    for (member_id, present) in watched {
        if !present && previous.watched.get(member_id) != Some(&false) {
            span().in_scope(|| {
                tracing::warn!(member_id = %member_id, "watched member is not shared with the image")
            });
        }
    }
}

/// The image's next state from a good poll, with the change audit against the last
/// good list (the first list is a baseline).
fn succeeded(
    previous: &ImageState,
    set: Arc<MemberSet>,
    watched: BTreeMap<String, bool>,
    store: &Store,
    by: Option<Arc<Attribution>>,
) -> ImageState {
    let name = previous.meta.name.clone();
    let now = now_unix();
    let mut next = previous.succeeded(set, watched, now);
    let new_set = next.members.clone().unwrap_or_default();
    match &previous.members {
        None => audit::log_baseline(&next.key, &name, &new_set),
        // The known list, unchanged.
        Some(old) if Arc::ptr_eq(old, &new_set) => {}
        Some(old) => {
            let changes = audit::diff(old, &new_set);
            audit::log(&next.key, &name, &changes, by.as_deref());
            for c in &changes {
                *next.changes.entry(c.kind()).or_insert(0) += 1;
            }
            store.record_changes(audit::events(&next.key, &name, &changes, now, by));
        }
    }
    next
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
