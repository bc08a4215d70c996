//! Images other tenants share with a target's project (offers), as the last good
//! listing found them: each with its owner, our member status, whether a trusted
//! owner entry matches the owner, and when the exporter first saw it.

use std::sync::Arc;

/// One image offered to the project.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    pub image_id: String,
    pub image_name: String,
    /// The tenant that shares it.
    pub owner: String,
    /// `pending`, `accepted` or `rejected`: the listing it came from.
    pub member_status: &'static str,
    /// A trusted owner entry matches `owner`.
    pub trusted: bool,
    /// When the exporter first listed it (Unix seconds).
    pub first_seen: f64,
}

/// A target's listings of offered images (`incoming:`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IncomingStatus {
    /// The last listing succeeded; `None` before the first.
    pub ok: Option<bool>,
    pub last_success_unix: Option<f64>,
    /// The last good listing, sorted by image ID; `None` before one (or a restored
    /// one: `restored` says so).
    pub offers: Option<Arc<Vec<Offer>>>,
    /// `offers` came from the state file and no listing has replaced it yet.
    pub restored: bool,
}

impl IncomingStatus {
    /// Offers by status, every status present (0 when none).
    pub fn counts(&self) -> [(&'static str, usize); 3] {
        let count = |status: &str| {
            self.offers
                .iter()
                .flat_map(|o| o.iter())
                .filter(|o| o.member_status == status)
                .count()
        };
        ["pending", "accepted", "rejected"].map(|s| (s, count(s)))
    }
}

/// The status label of a listing, as a static string (an unknown one is `unknown`).
pub fn member_status(s: &str) -> &'static str {
    match s {
        "pending" => "pending",
        "accepted" => "accepted",
        "rejected" => "rejected",
        _ => "unknown",
    }
}
