//! From state to what people and Prometheus read: the metric families ([`families`],
//! [`incoming`] for the images shared with us) written by the exposition writer
//! ([`exposition`]) in the format [`negotiation`] picks; the share rows ([`shares`]) and
//! the rows of images shared with us ([`offers`]), the share browser ([`html`]) and the
//! one-shot reports ([`report`]). Reads [`crate::state`] only.

pub mod events;
pub(crate) mod exposition;
pub(crate) mod families;
pub mod html;
mod html_incoming;
pub(crate) mod incoming;
mod markup;
pub mod negotiation;
pub mod offers;
pub mod report;
pub(crate) mod self_metrics;
pub mod shares;

pub use exposition::Format;
pub use families::{ExpiryReader, Metrics, RenderOptions};
pub use self_metrics::SelfMetrics;
