//! Ranges of the top-level settings, checked once at load so that nothing that
//! passes `--config.check` can overflow a timer or exhaust memory later.

use std::time::Duration;

use super::file::{FileConfig, MAX_BACKOFF, MAX_INTERVAL};
use super::types::{Fail, DEFAULT_MAX_RESPONSE_BYTES};

/// Checks every range; returns the response body cap in bytes.
pub(super) fn settings(raw: &FileConfig) -> Result<usize, Fail> {
    intervals(raw)?;
    requests(raw)?;
    retry(raw)?;
    members(raw)?;
    response_bytes(raw)
}

/// `poll_interval` and `discovery_interval`: 1s to 7d.
fn intervals(raw: &FileConfig) -> Result<(), Fail> {
    let week = humantime::format_duration(MAX_INTERVAL);
    if raw.poll_interval < Duration::from_secs(1) || raw.poll_interval > MAX_INTERVAL {
        return Err((
            "poll_interval".into(),
            format!("must be between 1s and {week}"),
        ));
    }
    if raw.discovery_interval < Duration::from_secs(1) || raw.discovery_interval > MAX_INTERVAL {
        return Err((
            "discovery_interval".into(),
            format!("must be between 1s and {week}"),
        ));
    }
    Ok(())
}

/// Request timeout, page size and concurrency.
fn requests(raw: &FileConfig) -> Result<(), Fail> {
    if raw.request_timeout.is_zero() || raw.request_timeout > Duration::from_secs(600) {
        return Err((
            "request_timeout".into(),
            "must be between 1ms and 10m".into(),
        ));
    }
    if !(1..=1000).contains(&raw.page_size) {
        return Err((
            "page_size".into(),
            format!("must be between 1 and 1000, got {}", raw.page_size),
        ));
    }
    if !(1..=256).contains(&raw.max_concurrent_requests) {
        return Err((
            "max_concurrent_requests".into(),
            format!(
                "must be between 1 and 256, got {}",
                raw.max_concurrent_requests
            ),
        ));
    }
    Ok(())
}

/// Retry attempts and backoffs.
fn retry(raw: &FileConfig) -> Result<(), Fail> {
    if raw.retry.max_backoff > MAX_BACKOFF {
        return Err(("retry.max_backoff".into(), "must be at most 10m".into()));
    }
    if !(1..=10).contains(&raw.retry.max_attempts) {
        return Err((
            "retry.max_attempts".into(),
            format!("must be between 1 and 10, got {}", raw.retry.max_attempts),
        ));
    }
    if raw.retry.initial_backoff > raw.retry.max_backoff {
        return Err((
            "retry.initial_backoff".into(),
            "must not be longer than retry.max_backoff".into(),
        ));
    }
    Ok(())
}

/// The member caps.
fn members(raw: &FileConfig) -> Result<(), Fail> {
    if !(1..=10_000_000).contains(&raw.max_members_per_image) {
        return Err((
            "max_members_per_image".into(),
            format!(
                "must be between 1 and 10000000, got {}",
                raw.max_members_per_image
            ),
        ));
    }
    if !(1..=100_000_000).contains(&raw.max_members_total) {
        return Err((
            "max_members_total".into(),
            format!(
                "must be between 1 and 100000000, got {}",
                raw.max_members_total
            ),
        ));
    }
    if !(1..=1_000_000).contains(&raw.max_incoming_images) {
        return Err((
            "max_incoming_images".into(),
            format!(
                "must be between 1 and 1000000, got {}",
                raw.max_incoming_images
            ),
        ));
    }
    if let Some(i) = raw.incoming.as_ref().and_then(|i| i.interval) {
        if i < Duration::from_secs(1) || i > MAX_INTERVAL {
            let week = humantime::format_duration(MAX_INTERVAL);
            return Err((
                "incoming.interval".into(),
                format!("must be between 1s and {week}"),
            ));
        }
    }
    Ok(())
}

/// `max_response_bytes`: 1KiB to 1GiB.
fn response_bytes(raw: &FileConfig) -> Result<usize, Fail> {
    let max_response_bytes = raw
        .max_response_bytes
        .map(|b| b.0)
        .unwrap_or(DEFAULT_MAX_RESPONSE_BYTES as u64);
    if !(1024..=(1u64 << 30)).contains(&max_response_bytes) {
        return Err((
            "max_response_bytes".into(),
            "must be between 1KiB and 1GiB".into(),
        ));
    }
    Ok(max_response_bytes as usize)
}
