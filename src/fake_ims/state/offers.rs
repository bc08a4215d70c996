//! Images other tenants offer to a project (the recipient's side of a share, listed
//! by `GET /v2/cloudimages?__imagetype=shared`): who owns each, our member status,
//! the faults of that listing and what clients asked it.
//!
//! Plain data like the rest of `FakeState`: no HTTP here; the listing itself is
//! answered by `fake_ims::offers`, and tests change offers through the methods of
//! `fake_ims::offer_controls`.

use std::collections::BTreeMap;

/// An image offered to a project.
#[derive(Debug, Clone)]
pub(in crate::fake_ims) struct Offer {
    pub(in crate::fake_ims) name: String,
    /// The sharing tenant's project or domain ID.
    pub(in crate::fake_ims) owner: String,
    /// Our answer: `pending`, `accepted` or `rejected` (any string is kept as given).
    pub(in crate::fake_ims) member_status: String,
}

/// project_id → image ID → offer; image IDs sorted, the listing's order.
pub(in crate::fake_ims) type Offers = BTreeMap<String, BTreeMap<String, Offer>>;

/// What one listing of offered images asked for, as sent (a `limit` that is not a
/// number reads as `None`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SharedQuery {
    /// The `X-Project-Id` header: the project the images are offered to.
    pub project_id: Option<String>,
    pub member_status: Option<String>,
    pub limit: Option<u32>,
    /// The last image ID of the previous page.
    pub marker: Option<String>,
}

/// The key of a project's shared-listing faults among the image faults: image IDs
/// never contain `:`, and the trace-list keys start with `cts:`.
pub(in crate::fake_ims) fn shared_fault_key(project_id: &str) -> String {
    format!("shared:{project_id}")
}
