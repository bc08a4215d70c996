//! A token bucket per target, so that a large fleet never trips the API's throttling
//! by itself. Requests wait for a token; the bucket holds at most one second's worth,
//! so bursts stay small.

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

const MIN_PER_SECOND: f64 = 1.0 / 3600.0;
const MAX_PER_SECOND: f64 = 100_000.0;

/// A rate written as `10/s`, `600/m` or `3600/h`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
}

impl Rate {
    pub fn parse(s: &str) -> Result<Rate, String> {
        let (n, unit) = s
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("must look like 10/s, 600/m or 3600/h, got {s:?}"))?;
        let n: f64 = n
            .trim()
            .parse()
            .map_err(|_| format!("must start with a number, like 10/s, got {s:?}"))?;
        let seconds = match unit.trim() {
            "s" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            other => return Err(format!("unit must be s, m or h, got {other:?}")),
        };
        if !(n.is_finite() && n > 0.0) {
            return Err(format!("must be a positive rate, got {s:?}"));
        }
        let per_second = n / seconds;
        // Beyond these, waits overflow timers or the limit means nothing.
        if !(MIN_PER_SECOND..=MAX_PER_SECOND).contains(&per_second) {
            return Err(format!("must be between 1/h and 100000/s, got {s:?}"));
        }
        Ok(Rate { per_second })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/s", self.per_second)
    }
}

#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    capacity: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    pub fn new(rate: Rate) -> Self {
        let capacity = rate.per_second.max(1.0);
        TokenBucket {
            rate: rate.per_second,
            capacity,
            state: Mutex::new((capacity, Instant::now())),
        }
    }

    /// Takes a token if one is there now, without waiting (a server refusing with 429
    /// rather than queueing).
    pub fn try_acquire(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let (tokens, last) = *state;
        let tokens =
            (tokens + now.duration_since(last).as_secs_f64() * self.rate).min(self.capacity);
        let taken = tokens >= 1.0;
        *state = (if taken { tokens - 1.0 } else { tokens }, now);
        taken
    }

    /// Waits until a request may be sent.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                let (tokens, last) = *state;
                let tokens = (tokens + now.duration_since(last).as_secs_f64() * self.rate)
                    .min(self.capacity);
                if tokens >= 1.0 {
                    *state = (tokens - 1.0, now);
                    return;
                }
                *state = (tokens, now);
                // Bounded by the rate's validated range; saturate rather than panic.
                Duration::try_from_secs_f64((1.0 - tokens) / self.rate)
                    .unwrap_or(Duration::from_secs(3600))
            };
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(Rate::parse("10/s").unwrap().per_second, 10.0);
        assert_eq!(Rate::parse("600/m").unwrap().per_second, 10.0);
        assert_eq!(Rate::parse(" 36 / h ").unwrap().per_second, 0.01);
        for bad in ["10", "x/s", "10/d", "0/s", "-1/s", "NaN/s"] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn try_acquire_refuses_beyond_the_burst() {
        let bucket = TokenBucket::new(Rate::parse("2/s").unwrap());
        assert!(bucket.try_acquire() && bucket.try_acquire());
        assert!(!bucket.try_acquire());
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(bucket.try_acquire());
        assert!(!bucket.try_acquire());
    }

    #[tokio::test(start_paused = true)]
    async fn bucket_spaces_requests_after_the_burst() {
        let bucket = TokenBucket::new(Rate::parse("2/s").unwrap());
        let start = Instant::now();
        for _ in 0..6 {
            bucket.acquire().await;
        }
        // Two at once (the burst), then one every 500 ms: the sixth at 2 s.
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(1990) && elapsed <= Duration::from_millis(2100),
            "{elapsed:?}"
        );
    }
}
