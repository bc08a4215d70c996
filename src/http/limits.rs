//! What one client may take of the server: time (header, body, handshake and write
//! stall timeouts) and request slots (`--web.max-requests`: scrapes have slots of their
//! own, the other pages share the rest, and health and readiness checks take none).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::pages;

/// Paths that are answered without taking a request slot: they cost nothing, and a
/// liveness probe refused while slow clients hold every slot would restart a healthy
/// exporter.
const EXEMPT_PATHS: [&str; 2] = [pages::HEALTHY, pages::READY];

/// `--web.max-requests` split in two pools, so that people browsing (or scripts on
/// the JSON API) can never make a Prometheus scrape fail, nor a pile of scrapes the
/// pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestCap {
    /// Slots for the metrics path.
    pub scrapes: usize,
    /// Slots for every other path (share browser, JSON API, landing page, reload).
    pub others: usize,
}

impl RequestCap {
    /// Half of `max` (rounded up) for scrapes, the rest for the other pages, and at
    /// least one each; `None` for 0 (no limit).
    pub fn split(max: usize) -> Option<RequestCap> {
        (max > 0).then(|| RequestCap {
            scrapes: max.div_ceil(2),
            others: (max / 2).max(1),
        })
    }
}

/// A client must send a request's headers within this (slowloris); it also closes
/// keep-alive connections idle this long.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A request body must arrive within this after its headers.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A TLS handshake must finish within this.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection whose writes make no progress for this long (a client that stopped
/// reading) is closed.
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// No endpoint takes a body; this only bounds what a client can make us buffer.
/// How long a client may take at each step: the defaults above, or one figure for all
/// (`--web.timeout`, hidden: for tests, which would otherwise wait out 10 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub header_read: Duration,
    pub body_read: Duration,
    pub tls_handshake: Duration,
    pub write_stall: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            header_read: HEADER_READ_TIMEOUT,
            body_read: BODY_READ_TIMEOUT,
            tls_handshake: TLS_HANDSHAKE_TIMEOUT,
            write_stall: WRITE_STALL_TIMEOUT,
        }
    }
}

impl Timeouts {
    /// The same figure for every step.
    pub fn all(d: Duration) -> Timeouts {
        Timeouts {
            header_read: d,
            body_read: d,
            tls_handshake: d,
            write_stall: d,
        }
    }
}

pub(super) const MAX_BODY_BYTES: usize = 64 * 1024;

/// A pool of request slots.
pub(super) struct Pool {
    pub(super) slots: Arc<Semaphore>,
    pub(super) size: usize,
    pub(super) what: &'static str,
}

impl Pool {
    fn new(size: usize, what: &'static str) -> Pool {
        Pool {
            slots: Arc::new(Semaphore::new(size)),
            size,
            what,
        }
    }
}

/// The two pools, by path.
pub(super) struct Pools {
    /// (scrapes, other pages); `None` without a limit.
    pools: Option<(Pool, Pool)>,
    telemetry_path: String,
}

impl Pools {
    pub(super) fn new(max_requests: usize, telemetry_path: String) -> Pools {
        Pools {
            pools: RequestCap::split(max_requests).map(|cap| {
                (
                    Pool::new(cap.scrapes, "scrapes"),
                    Pool::new(cap.others, "other pages"),
                )
            }),
            telemetry_path,
        }
    }

    /// The pool a request to `path` takes its slot from; `None` for no slot.
    pub(super) fn pool(&self, path: &str) -> Option<&Pool> {
        if EXEMPT_PATHS.contains(&path) {
            return None;
        }
        let (scrapes, others) = self.pools.as_ref()?;
        Some(if path == self.telemetry_path {
            scrapes
        } else {
            others
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_split_between_scrapes_and_pages() {
        assert_eq!(RequestCap::split(0), None);
        let split = |n| RequestCap::split(n).map(|c| (c.scrapes, c.others));
        assert_eq!(split(40), Some((20, 20)));
        assert_eq!(split(5), Some((3, 2)));
        assert_eq!(split(2), Some((1, 1)));
        // One slot still leaves the pages one: a scrape is never refused for them.
        assert_eq!(split(1), Some((1, 1)));
    }

    #[test]
    fn health_takes_no_slot_and_scrapes_their_own() {
        let pools = Pools::new(4, "/metrics".into());
        assert!(pools.pool("/-/healthy").is_none());
        assert!(pools.pool("/-/ready").is_none());
        assert_eq!(pools.pool("/metrics").map(|p| p.what), Some("scrapes"));
        assert_eq!(pools.pool("/shares").map(|p| p.what), Some("other pages"));
        assert!(Pools::new(0, "/metrics".into()).pool("/metrics").is_none());
    }
}
