//! The state file as written: one versioned JSON document (the serde schema), and a
//! snapshot's images and changes in that form.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::state::{ChangeEvent, ImageState, TargetStatus};

#[derive(Serialize, Deserialize)]
pub(super) struct StateFile {
    pub(super) version: u32,
    pub(super) written_at: f64,
    pub(super) images: Vec<StoredImage>,
    #[serde(default)]
    pub(super) discovered: Vec<StoredDiscovery>,
    /// The most recent member changes, oldest first (absent in files written before
    /// the share browser showed them).
    #[serde(default)]
    pub(super) changes: Vec<StoredChange>,
    /// Where each target's trace reads stand (absent in files written before traces
    /// were read).
    #[serde(default)]
    pub(super) traces: Vec<StoredTraceWindow>,
    /// The last good list of images shared with each target (absent in files written
    /// before `incoming:`).
    #[serde(default)]
    pub(super) incoming: Vec<StoredIncoming>,
}

/// A target's last good list of images shared with it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredIncoming {
    pub region: String,
    pub project_id: String,
    pub last_success: Option<f64>,
    pub offers: Vec<StoredOffer>,
}

/// One image shared with a target.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredOffer {
    pub image_id: String,
    pub name: String,
    pub owner: String,
    pub member_status: String,
    pub trusted: bool,
    pub first_seen: f64,
}

/// Trace IDs remembered per target at most: far more than the IMS member traces of
/// any lookback window.
pub const MAX_SEEN_TRACES: usize = 100_000;

/// Where one target's trace reads stand: the end of the last good read's window (Unix
/// ms) and the trace IDs already acted on, with their operation time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredTraceWindow {
    pub region: String,
    pub project_id: String,
    pub to_ms: Option<i64>,
    #[serde(default)]
    pub seen: Vec<(String, i64)>,
}

/// One change. An `image_unmonitored` change has empty member fields and the image's
/// `members` (and `unexpected_members`, unless unknown); an exporter that does not know
/// the kind drops it.
#[derive(Serialize, Deserialize)]
pub(super) struct StoredChange {
    pub(super) time: f64,
    pub(super) change: String,
    pub(super) region: String,
    pub(super) project_id: String,
    pub(super) image_id: String,
    pub(super) image_name: String,
    pub(super) member_id: String,
    pub(super) member_type: String,
    pub(super) status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) old_status: Option<String>,
    pub(super) unexpected: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) members: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) unexpected_members: Option<usize>,
    /// The trace that triggered the poll that found the change, and who made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) trace_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) actor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) source_ip: Option<String>,
    /// For a change to an image shared with us: its owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) owner: Option<String>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct StoredImage {
    pub(super) region: String,
    pub(super) project_id: String,
    pub(super) image_id: String,
    pub(super) name: String,
    pub(super) source: String,
    pub(super) last_success: Option<f64>,
    /// Whether the list is the whole member list (`list_members: true`).
    pub(super) complete: bool,
    pub(super) members: Vec<StoredMember>,
    #[serde(default)]
    pub(super) watched: BTreeMap<String, bool>,
    #[serde(default)]
    pub(super) changes: BTreeMap<String, u64>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct StoredMember {
    pub(super) id: String,
    #[serde(rename = "type")]
    pub(super) member_type: String,
    pub(super) status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(super) urn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) created_at: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) updated_at: Option<f64>,
}

/// What the state file says of the targets: what each last discovered, and where its
/// trace reads stood.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RestoredTargets {
    pub discovered: Vec<StoredDiscovery>,
    pub traces: Vec<StoredTraceWindow>,
    pub incoming: Vec<StoredIncoming>,
}

/// What one target last discovered: (image ID, name).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredDiscovery {
    pub region: String,
    pub project_id: String,
    pub images: Vec<(String, String)>,
}

pub(super) fn store_image(s: &Arc<ImageState>) -> Option<StoredImage> {
    let members = s.members.as_ref()?;
    Some(StoredImage {
        region: s.key.region.to_string(),
        project_id: s.key.project_id.to_string(),
        image_id: s.key.image_id.to_string(),
        name: s.meta.name.to_string(),
        source: s.meta.source.as_str().to_string(),
        last_success: s.last_success_unix,
        complete: members.complete,
        members: members
            .members
            .iter()
            .map(|m| StoredMember {
                id: m.member_id().to_string(),
                member_type: m.member_type().to_string(),
                status: m.status().to_string(),
                urn: m.urn().to_string(),
                created_at: m.created_at(),
                updated_at: m.updated_at(),
            })
            .collect(),
        watched: s.watched.clone(),
        changes: s
            .changes
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), *v))
            .collect(),
    })
}

pub(super) fn store_change(c: &ChangeEvent) -> StoredChange {
    StoredChange {
        time: c.time_unix,
        change: c.kind.as_str().to_string(),
        region: c.key.region.to_string(),
        project_id: c.key.project_id.to_string(),
        image_id: c.key.image_id.to_string(),
        image_name: c.image_name.to_string(),
        member_id: c.member_id.clone(),
        member_type: c.member_type.to_string(),
        status: c.status.to_string(),
        old_status: c.old_status.as_ref().map(|s| s.to_string()),
        unexpected: c.unexpected,
        members: c.counts.map(|n| n.members),
        unexpected_members: c.counts.and_then(|n| n.unexpected),
        trace_id: c.by.as_ref().map(|b| b.trace_id.clone()),
        actor: c.by.as_ref().and_then(|b| b.actor.clone()),
        source_ip: c.by.as_ref().and_then(|b| b.source_ip.clone()),
        owner: c.owner.clone(),
    }
}

/// Where a target's trace reads stand, if it reads traces.
pub(super) fn store_window(t: &Arc<TargetStatus>) -> Option<StoredTraceWindow> {
    let w = t.cts.as_ref()?.window.as_ref()?;
    Some(StoredTraceWindow {
        region: t.region.to_string(),
        project_id: t.project_id.to_string(),
        to_ms: w.to_ms,
        seen: w.seen.clone(),
    })
}

/// The last good list of images shared with a target, if it lists them.
pub(super) fn store_incoming(t: &Arc<TargetStatus>) -> Option<StoredIncoming> {
    let status = t.incoming.as_ref()?;
    let offers = status.offers.as_ref()?;
    Some(StoredIncoming {
        region: t.region.to_string(),
        project_id: t.project_id.to_string(),
        last_success: status.last_success_unix,
        offers: offers
            .iter()
            .map(|o| StoredOffer {
                image_id: o.image_id.clone(),
                name: o.image_name.clone(),
                owner: o.owner.clone(),
                member_status: o.member_status.to_string(),
                trusted: o.trusted,
                first_seen: o.first_seen,
            })
            .collect(),
    })
}
