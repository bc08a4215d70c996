//! From state to exposition: the metric families ([`families`]) written by the
//! exposition writer ([`exposition`]). Reads [`crate::state`] only.

pub(crate) mod exposition;
pub(crate) mod families;
pub mod html;
pub mod report;
pub(crate) mod self_metrics;
pub mod shares;

pub use exposition::Format;
pub use families::Metrics;
pub use self_metrics::SelfMetrics;
