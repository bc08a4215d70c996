//! From state to exposition: the metric families ([`families`]) written by the
//! exposition writer ([`exposition`]). Reads [`crate::state`] only.

pub mod exposition;
pub mod families;
pub mod self_metrics;

pub use exposition::Format;
pub use families::Metrics;
pub use self_metrics::SelfMetrics;
