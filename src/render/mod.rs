//! From state to what people and Prometheus read: the metric families ([`families`])
//! written by the exposition writer ([`exposition`]) in the format [`negotiation`]
//! picks; the share rows ([`shares`]), the share browser ([`html`]) and the one-shot
//! reports ([`report`]). Reads [`crate::state`] only.

pub mod events;
pub(crate) mod exposition;
pub(crate) mod families;
pub mod html;
pub mod negotiation;
pub mod report;
pub(crate) mod self_metrics;
pub mod shares;

pub use exposition::Format;
pub use families::{ExpiryReader, Metrics, RenderOptions};
pub use self_metrics::SelfMetrics;
