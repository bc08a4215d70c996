//! Where a target's trace reads stand: every read covers `[last good read's end −
//! lookback, now]`, so a trace recorded late, or during an outage, is still read; the
//! trace IDs already acted on are remembered as long as a window can list them again,
//! so none is acted on twice. Beyond the trace list's retention, what a window cannot
//! reach is made up for by polling every image once.

use std::collections::HashMap;

use crate::state::storage::MAX_SEEN_TRACES;
use crate::state::TraceWindow;

/// How long CTS keeps traces.
pub const RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;
/// A window starts this much inside the retention, so that its oldest traces are
/// still there when the read reaches them.
const RETENTION_MARGIN_MS: i64 = 60 * 1000;
/// Pushed traces of a target that reads none are remembered this long.
const PUSHED_MEMORY_MS: i64 = 3600 * 1000;

/// The time range of one read (Unix ms, inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub from_ms: i64,
    pub to_ms: i64,
    /// The last good read ended before the retention: traces were lost.
    pub beyond_retention: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Window {
    to_ms: Option<i64>,
    /// Trace ID → operation time (Unix ms).
    seen: HashMap<String, i64>,
}

impl Window {
    pub fn restored(w: &TraceWindow) -> Window {
        Window {
            to_ms: w.to_ms,
            seen: w.seen.iter().cloned().collect(),
        }
    }

    /// The values the state file keeps, oldest first.
    pub fn stored(&self) -> TraceWindow {
        let mut seen: Vec<(String, i64)> = self.seen.iter().map(|(k, v)| (k.clone(), *v)).collect();
        seen.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        TraceWindow {
            to_ms: self.to_ms,
            seen,
        }
    }

    /// The next read's range at `now_ms`.
    pub fn range(&self, now_ms: i64, lookback_ms: i64) -> Range {
        let oldest = now_ms - RETENTION_MS + RETENTION_MARGIN_MS;
        let from = self.to_ms.unwrap_or(now_ms).min(now_ms) - lookback_ms;
        Range {
            from_ms: from.max(oldest),
            to_ms: now_ms,
            beyond_retention: self.to_ms.is_some() && from < oldest,
        }
    }

    /// Remembers a trace; false when it was already seen.
    pub fn first_time(&mut self, trace_id: &str, time_ms: i64) -> bool {
        if self.seen.contains_key(trace_id) {
            return false;
        }
        if self.seen.len() >= MAX_SEEN_TRACES {
            // Full: forget the oldest, which the next window is the least likely to list.
            if let Some(oldest) = self
                .seen
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(k, _)| k.clone())
            {
                self.seen.remove(&oldest);
            }
        }
        self.seen.insert(trace_id.to_string(), time_ms);
        true
    }

    /// A good read up to `to_ms`: the next starts `lookback_ms` before it, so only the
    /// traces it can list again are remembered.
    pub fn advance(&mut self, to_ms: i64, lookback_ms: i64) {
        self.to_ms = Some(to_ms);
        self.seen.retain(|_, t| *t >= to_ms - lookback_ms);
    }

    /// For a target that reads no traces: pushed ones are remembered for an hour.
    pub fn forget_pushed_before(&mut self, now_ms: i64) {
        self.seen.retain(|_, t| *t >= now_ms - PUSHED_MEMORY_MS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_overlap_by_the_lookback_and_cover_an_outage() {
        let mut w = Window::default();
        let r = w.range(1_000_000, 300_000);
        assert_eq!(
            (r.from_ms, r.to_ms, r.beyond_retention),
            (700_000, 1_000_000, false)
        );
        w.advance(r.to_ms, 300_000);
        // Reads failed for a while: the next good one starts where the last good one ended.
        let r = w.range(5_000_000, 300_000);
        assert_eq!((r.from_ms, r.to_ms), (700_000, 5_000_000));
    }

    #[test]
    fn beyond_the_retention_the_window_is_cut_and_says_so() {
        let mut w = Window::default();
        w.advance(1_000, 0);
        let now = 1_000 + RETENTION_MS * 2;
        let r = w.range(now, 0);
        assert!(r.beyond_retention);
        assert_eq!(r.from_ms, now - RETENTION_MS + RETENTION_MARGIN_MS);
    }

    #[test]
    fn a_trace_is_new_once_and_forgotten_when_no_window_can_list_it() {
        let mut w = Window::default();
        assert!(w.first_time("a", 100));
        assert!(!w.first_time("a", 100));
        assert!(w.first_time("b", 900));
        w.advance(1_000, 200);
        assert_eq!(w.stored().seen, vec![("b".to_string(), 900)]);
        let back = Window::restored(&w.stored());
        assert_eq!(back.stored(), w.stored());
    }
}
