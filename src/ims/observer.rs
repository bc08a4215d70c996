//! How the client reports what it does, without knowing who listens: the renderer's
//! self-metrics implement [`RequestObserver`] (request counts, latency, retries).

use std::time::Duration;

/// Told about every API request the client makes.
pub trait RequestObserver: Send + Sync {
    /// One request ended: `code` is the HTTP status, or `timeout` / `error`.
    fn request(&self, operation: &'static str, code: &str, elapsed: Duration);
    /// A failed request is about to be tried again.
    fn retry(&self, operation: &'static str);
}
