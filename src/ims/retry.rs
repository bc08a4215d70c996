//! When and how long to wait before trying a failed API call again: exponential
//! backoff with full jitter, bounded attempts, `Retry-After` honoured. Only failures
//! that may pass are retried: 5xx, 429/throttling, timeouts, connection errors and
//! bodies cut off mid-read.

use std::time::Duration;

use super::error::{ApiError, Reason};

/// `retry:` in the config.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included (1 = no retries).
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// The API gateway's advice for throttling is to back off for 2-5 s.
const THROTTLE_FLOOR: Duration = Duration::from_secs(2);
/// A `Retry-After` longer than this is not waited for within a poll.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

pub fn is_retryable(e: &ApiError) -> bool {
    matches!(
        e.reason(),
        Reason::Http5xx | Reason::Throttled | Reason::Timeout | Reason::Connect | Reason::Read
    )
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` (`attempt` counts from 1), or `None` when
    /// the error is final or the attempts are used up. `unit` is a random number in
    /// [0, 1) for the jitter.
    pub fn delay(
        &self,
        attempt: u32,
        error: &ApiError,
        retry_after: Option<Duration>,
        unit: f64,
    ) -> Option<Duration> {
        if attempt >= self.max_attempts || !is_retryable(error) {
            return None;
        }
        let exp = self
            .initial_backoff
            .saturating_mul(1u32.checked_shl(attempt - 1).unwrap_or(u32::MAX));
        let cap = exp.min(self.max_backoff);
        let mut wait = cap.mul_f64(unit.clamp(0.0, 1.0));
        if error.reason() == Reason::Throttled {
            wait = wait.max(THROTTLE_FLOOR.min(self.max_backoff));
        }
        if let Some(after) = retry_after {
            wait = wait.max(after.min(MAX_RETRY_AFTER));
        }
        Some(wait)
    }
}

/// Parses `Retry-After`: delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when =
        time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
    let when: std::time::SystemTime = when.into();
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16) -> ApiError {
        ApiError::Http {
            operation: "list_members",
            status,
            code: None,
            message: None,
            request_id: None,
        }
    }

    #[test]
    fn only_transient_failures_are_retried() {
        let p = RetryPolicy::default();
        assert!(p.delay(1, &http(503), None, 0.5).is_some());
        assert!(p.delay(1, &http(429), None, 0.5).is_some());
        assert!(p
            .delay(1, &ApiError::Timeout { operation: "x" }, None, 0.5)
            .is_some());
        assert!(p.delay(1, &http(404), None, 0.5).is_none());
        assert!(p.delay(1, &http(401), None, 0.5).is_none());
        assert!(p.delay(1, &http(400), None, 0.5).is_none());
        assert!(p
            .delay(
                1,
                &ApiError::Decode {
                    operation: "x",
                    message: String::new(),
                    request_id: None
                },
                None,
                0.5
            )
            .is_none());
        assert!(
            p.delay(3, &http(503), None, 0.5).is_none(),
            "attempts are bounded"
        );
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let p = RetryPolicy {
            max_attempts: 100,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
        };
        assert_eq!(
            p.delay(1, &http(500), None, 0.999_999).unwrap().as_millis(),
            99
        );
        assert_eq!(
            p.delay(3, &http(500), None, 0.999_999).unwrap().as_millis(),
            399
        );
        assert_eq!(
            p.delay(8, &http(500), None, 0.999_999).unwrap().as_millis(),
            999
        );
        assert_eq!(
            p.delay(8, &http(500), None, 0.0).unwrap(),
            Duration::ZERO,
            "full jitter"
        );
        assert_eq!(
            p.delay(40, &http(500), None, 0.5).unwrap(),
            Duration::from_millis(500),
            "no overflow"
        );
    }

    #[test]
    fn retry_after_and_throttling_floor() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.delay(1, &http(503), Some(Duration::from_secs(7)), 0.0),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            p.delay(1, &http(429), None, 0.0),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            p.delay(1, &http(503), Some(Duration::from_secs(3600)), 0.0),
            Some(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn retry_after_formats() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("5", now), Some(Duration::from_secs(5)));
        let date = time::OffsetDateTime::from(now + Duration::from_secs(30))
            .format(&time::format_description::well_known::Rfc2822)
            .unwrap();
        assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
