//! What tests (and the demo) do to the images offered to a project: offer, withdraw,
//! change our answer, inject faults into the listing, and read what was asked of it.
//! The data is `state::offers`'; these are [`FakeState`]'s methods over it.

use super::state::{shared_fault_key, FakeState, Fault, Offer, SharedQuery};

impl FakeState {
    /// Offers `image_id` (named `name`, owned by the tenant `owner`) to `project_id`
    /// with our `member_status` (`pending`, `accepted` or `rejected`); replaces an
    /// offer of the same image to that project.
    pub fn offer_image(
        &self,
        project_id: &str,
        image_id: &str,
        name: &str,
        owner: &str,
        member_status: &str,
    ) {
        let offer = Offer {
            name: name.into(),
            owner: owner.into(),
            member_status: member_status.into(),
        };
        self.lock()
            .offers
            .entry(project_id.into())
            .or_default()
            .insert(image_id.into(), offer);
    }

    /// The owner stops sharing `image_id` with `project_id`; `false` if it was not
    /// offered.
    pub fn withdraw_offer(&self, project_id: &str, image_id: &str) -> bool {
        self.lock()
            .offers
            .get_mut(project_id)
            .and_then(|o| o.remove(image_id))
            .is_some()
    }

    /// Our answer to an offer changes (accepted, rejected, back to pending); `false` if
    /// `image_id` is not offered to `project_id`.
    pub fn set_offer_status(&self, project_id: &str, image_id: &str, member_status: &str) -> bool {
        let mut inner = self.lock();
        match inner
            .offers
            .get_mut(project_id)
            .and_then(|o| o.get_mut(image_id))
        {
            Some(offer) => {
                offer.member_status = member_status.into();
                true
            }
            None => false,
        }
    }

    /// Injects `fault` into every listing of the images offered to `project_id` (any
    /// member status); its own image listing, member lists and traces are not
    /// affected. `Fault::FailPage` counts pages of the listing, `Fault::Flood` floods
    /// it with offers. `None` clears it.
    pub fn set_shared_fault(&self, project_id: &str, fault: Option<Fault>) {
        self.set_fault(&shared_fault_key(project_id), fault);
    }

    /// Listings of offered images answered so far (any status, signed or not, with or
    /// without `X-Project-Id`). They are IMS requests, so [`FakeState::requests`]
    /// counts them too.
    pub fn shared_list_requests(&self) -> u64 {
        self.lock().shared_requests
    }

    /// The query of every listing of offered images so far, in arrival order.
    pub fn shared_queries(&self) -> Vec<SharedQuery> {
        self.lock().shared_queries.clone()
    }

    /// Counts a listing of offered images and keeps its query.
    pub(in crate::fake_ims) fn record_shared_request(&self, query: SharedQuery) {
        let mut inner = self.lock();
        inner.shared_requests += 1;
        inner.shared_queries.push(query);
    }
}
