//! `events:`: how often each target's trace list is read (`events.cts`) and the
//! webhook's settings (`events.webhook`: the token is read here, so that
//! `--config.check` catches a missing or weak one).

use std::time::Duration;

use super::file::{FileCts, FileEvents, FileWebhook};
use super::types::{CtsSettings, Events, Fail, WebhookSettings};
use crate::auth::credentials::Secret;
use crate::files::{read_text_capped, MAX_SECRET_BYTES};
use crate::ims::ratelimit::Rate;

/// Longest `events.cts.interval` and `lookback`.
const MAX_CTS_INTERVAL: Duration = Duration::from_secs(3600);
/// Shortest webhook token: a guessable token would open the event path to anyone.
const MIN_TOKEN_LEN: usize = 16;
/// The webhook's rate limit when the config sets none.
const DEFAULT_WEBHOOK_RATE: &str = "10/s";
/// Longest SMN topic URN accepted.
const MAX_TOPIC_BYTES: usize = 512;

/// `events:`: the trace reads' schedule and the webhook's settings.
pub(super) fn events(raw: Option<&FileEvents>) -> Result<Events, Fail> {
    let Some(raw) = raw else {
        return Ok(Events::default());
    };
    let cts = raw.cts.as_ref().map(cts).transpose()?;
    let webhook = raw.webhook.as_ref().map(webhook).transpose()?;
    Ok(Events { cts, webhook })
}

/// `events.cts`: 1s..1h between reads, a lookback of at most 1h.
fn cts(c: &FileCts) -> Result<CtsSettings, Fail> {
    if c.interval < Duration::from_secs(1) || c.interval > MAX_CTS_INTERVAL {
        return Err((
            "events.cts.interval".into(),
            "must be between 1s and 1h".into(),
        ));
    }
    if c.lookback > MAX_CTS_INTERVAL {
        return Err((
            "events.cts.lookback".into(),
            "must be between 0s and 1h".into(),
        ));
    }
    Ok(CtsSettings {
        interval: c.interval,
        lookback: c.lookback,
    })
}

fn key(k: &str) -> String {
    format!("events.webhook.{k}")
}

/// `events.webhook`: the token, the SMN topics and hosts, the rate limit.
fn webhook(w: &FileWebhook) -> Result<WebhookSettings, Fail> {
    let token = token(w)?;
    for (i, t) in w.smn_topics.iter().enumerate() {
        if !t.starts_with("urn:smn:") || t.len() > MAX_TOPIC_BYTES {
            return Err((
                key(&format!("smn_topics[{i}]")),
                format!(
                    "must be an SMN topic URN like urn:smn:cn-north-4:<project>:<topic>, got {t:?}"
                ),
            ));
        }
    }
    for (i, h) in w.smn_hosts.iter().enumerate() {
        let valid = !h.is_empty()
            && h.len() <= 255
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
        if !valid {
            return Err((
                key(&format!("smn_hosts[{i}]")),
                format!("must be a host name, with an optional :port, got {h:?}"),
            ));
        }
    }
    let rate = w.rate_limit.as_deref().unwrap_or(DEFAULT_WEBHOOK_RATE);
    let rate_limit = Rate::parse(rate).map_err(|m| (key("rate_limit"), m))?;
    Ok(WebhookSettings {
        token,
        token_file: w.token_file.clone(),
        smn_verify: w.smn_verify.unwrap_or(!w.smn_topics.is_empty()),
        smn_topics: w.smn_topics.clone(),
        smn_hosts: w.smn_hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
        rate_limit,
    })
}

/// The token in `token_file`: at least [`MIN_TOKEN_LEN`] characters, no white space.
fn token(w: &FileWebhook) -> Result<Secret, Fail> {
    let text = read_text_capped(&w.token_file, MAX_SECRET_BYTES).map_err(|e| {
        (
            key("token_file"),
            format!("{}: {e}", w.token_file.display()),
        )
    })?;
    let token = text.trim();
    if token.len() < MIN_TOKEN_LEN || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err((
            key("token_file"),
            format!("the token must be at least {MIN_TOKEN_LEN} characters, without spaces"),
        ));
    }
    Ok(Secret::new(token))
}
