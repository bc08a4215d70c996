//! The webhook itself: `POST /api/v1/events` (`events.webhook`): CTS traces pushed by SMN, FunctionGraph
//! or EventGrid, authenticated by a token ([`token`]), recognised by shape ([`body`]),
//! SMN messages verified and subscriptions confirmed ([`smn`]), then handed to the
//! poller on a bounded channel as [`PushedTraces`]. Every request is counted in
//! `ims_webhook_requests_total{result}`.
//!
//! It never polls, dedupes or writes the snapshot: the consumer of the channel does.
//! The settings in force are swapped whole by [`Webhook::reload`]; without the block
//! the route answers 404. The HTTP half (route, body cap) is [`crate::http`]'s, which
//! knows this module only as an [`EventsEndpoint`].

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use axum::body::Bytes;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use serde_json::json;
use tokio::sync::mpsc;

use crate::config::{Config, WebhookSettings};
use crate::http::{BodyFailure, EventsAnswer, EventsEndpoint, EventsFuture, MAX_EVENTS_BODY_BYTES};
use crate::ims::ratelimit::TokenBucket;
use crate::ims::traces::{PushedTraces, Trace};
use crate::state::events::WebhookResult;
use crate::state::Store;

use super::body::{self, Push, Shape};
use super::errors::BodyError;
use super::message::{SmnKind, SmnMessage};
use super::smn::{CertCache, Hosts, Smn};
use super::token::Token;

/// Content types taken (SMN posts `text/plain`; CloudEvents structured mode has its
/// own); the body is JSON whatever the label.
const CONTENT_TYPES: [&str; 3] = [
    "application/json",
    "text/plain",
    "application/cloudevents+json",
];

/// What the webhook takes from a config.
struct Inputs {
    settings: Option<WebhookSettings>,
    regions: Vec<String>,
    ca_file: Option<std::path::PathBuf>,
    timeout: Duration,
}

impl Inputs {
    fn of(config: &Config) -> Inputs {
        Inputs {
            settings: config.events.webhook.clone(),
            regions: config.targets.iter().map(|t| t.region.clone()).collect(),
            ca_file: config.ca_file.clone(),
            // A confirmation or certificate fetch holds a request open: keep it short.
            timeout: config.request_timeout.min(Duration::from_secs(30)),
        }
    }
}

/// The settings in force, built from one config.
struct Live {
    settings: WebhookSettings,
    ca_file: Option<std::path::PathBuf>,
    token: Token,
    bucket: Arc<TokenBucket>,
    smn: Smn,
}

impl Live {
    /// The live settings, keeping what `old` had that still applies (the rate's
    /// bucket, fetched certificates). Blocking: reads the CA file and the system's
    /// roots for the client.
    fn build(inputs: Inputs, old: Option<&Live>) -> Option<Live> {
        let settings = inputs.settings?;
        let hosts = Hosts::new(
            inputs.regions.iter().map(String::as_str),
            &settings.smn_hosts,
        );
        let bucket = match old {
            Some(o) if o.settings.rate_limit == settings.rate_limit => o.bucket.clone(),
            _ => Arc::new(TokenBucket::new(settings.rate_limit)),
        };
        let certs = match old {
            Some(o) if o.ca_file == inputs.ca_file && o.smn.hosts == hosts => o.smn.certs.clone(),
            _ => Arc::new(CertCache::default()),
        };
        let smn = Smn::new(
            settings.smn_topics.clone(),
            hosts,
            settings.smn_verify,
            inputs.ca_file.as_deref(),
            inputs.timeout,
            certs,
        );
        Some(Live {
            token: Token::new(settings.token.expose()),
            bucket,
            smn,
            ca_file: inputs.ca_file,
            settings,
        })
    }
}

/// The push endpoint: the live settings, where counts go, and the channel to the
/// poller.
pub struct Webhook {
    live: ArcSwapOption<Live>,
    store: Arc<Store>,
    pushed: mpsc::Sender<PushedTraces>,
}

impl Webhook {
    /// The endpoint for `config` (off when it has no `events.webhook`).
    pub async fn new(
        config: &Config,
        store: Arc<Store>,
        pushed: mpsc::Sender<PushedTraces>,
    ) -> Webhook {
        let webhook = Webhook {
            live: ArcSwapOption::empty(),
            store,
            pushed,
        };
        webhook.reload(config).await;
        webhook
    }

    /// Takes the settings of a reloaded config (token, topics, hosts, rate); a config
    /// without `events.webhook` turns the route off (404). Requests in flight finish
    /// with the settings they started with.
    pub async fn reload(&self, config: &Config) {
        let inputs = Inputs::of(config);
        let old = self.live.load_full();
        // Building the client reads files: off the async workers.
        match tokio::task::spawn_blocking(move || Live::build(inputs, old.as_deref())).await {
            Ok(new) => self.live.store(new.map(Arc::new)),
            Err(e) => tracing::error!(error = %e, "webhook settings not updated"),
        }
    }

    fn count(&self, result: WebhookResult) {
        self.store.events().webhook_request(result);
    }

    /// A refusal, counted.
    fn refuse(&self, result: WebhookResult, status: StatusCode, error: &str) -> EventsAnswer {
        self.count(result);
        EventsAnswer::new(status, json!({ "error": error }).to_string())
    }

    fn invalid(&self, e: &BodyError) -> EventsAnswer {
        tracing::debug!(error = %e, "webhook: body refused");
        self.refuse(
            WebhookResult::Invalid,
            StatusCode::BAD_REQUEST,
            &e.to_string(),
        )
    }

    /// The trace sent to the poller. Checked here (again) so that no shape, present or
    /// future, can hand over an unchecked one.
    fn enqueue(&self, trace: Trace, region: Option<String>, shape: &str) -> EventsAnswer {
        if let Err(e) = body::check(&trace) {
            return self.invalid(&e);
        }
        let batch = PushedTraces {
            traces: vec![trace],
            region,
        };
        match self.pushed.try_send(batch) {
            Ok(()) => {
                tracing::debug!(shape, "webhook: trace accepted");
                self.count(WebhookResult::Accepted);
                EventsAnswer::new(
                    StatusCode::ACCEPTED,
                    json!({ "status": "accepted", "traces": 1 }).to_string(),
                )
            }
            Err(mpsc::error::TrySendError::Full(_)) => self
                .refuse(
                    WebhookResult::Throttled,
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many pushed events are waiting; try again later",
                )
                .with_header(header::RETRY_AFTER, HeaderValue::from_static("1")),
            Err(mpsc::error::TrySendError::Closed(_)) => self.refuse(
                WebhookResult::Throttled,
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting down",
            ),
        }
    }

    async fn receive_body(&self, body: Bytes) -> EventsAnswer {
        let Some(live) = self.live.load_full() else {
            return not_found();
        };
        match body::parse(&body) {
            Err(e) => self.invalid(&e),
            Ok(Push::Trace(trace, shape)) => {
                let shape = match shape {
                    Shape::Trace => "trace",
                    Shape::FunctionGraph => "functiongraph",
                    Shape::CloudEvent => "cloudevent",
                };
                self.enqueue(*trace, None, shape)
            }
            Ok(Push::Smn(message)) => self.smn(&live.smn, &message).await,
        }
    }

    /// An SMN message: trusted first (topic, signature), then acted on.
    async fn smn(&self, smn: &Smn, m: &SmnMessage) -> EventsAnswer {
        if let Err(e) = smn.trust(m).await {
            tracing::warn!(error = %e, kind = m.kind.as_str(), "webhook: SMN message refused");
            return self.refuse(
                WebhookResult::Unverified,
                StatusCode::FORBIDDEN,
                &e.to_string(),
            );
        }
        match m.kind {
            SmnKind::Notification => match body::trace_in_message(&m.message) {
                Ok(trace) => self.enqueue(trace, m.region(), "smn"),
                Err(e) => self.invalid(&e),
            },
            SmnKind::SubscriptionConfirmation => match smn.confirm(m).await {
                Ok(()) => {
                    // The topic is one of the configured ones: fine to log.
                    tracing::info!(topic = %m.topic_urn, "webhook: SMN subscription confirmed");
                    self.count(WebhookResult::Accepted);
                    EventsAnswer::new(StatusCode::OK, json!({ "status": "confirmed" }).to_string())
                }
                Err(e) if e.is_refusal() => {
                    tracing::warn!(error = %e, "webhook: SMN subscription not confirmed");
                    self.refuse(
                        WebhookResult::Unverified,
                        StatusCode::FORBIDDEN,
                        &e.to_string(),
                    )
                }
                Err(e) => {
                    // A trusted message whose confirmation GET failed: it was accepted,
                    // our side of it did not work out.
                    tracing::warn!(error = %e, topic = %m.topic_urn, "webhook: SMN subscription confirmation failed");
                    self.count(WebhookResult::Accepted);
                    EventsAnswer::new(
                        StatusCode::BAD_GATEWAY,
                        json!({ "error": e.to_string() }).to_string(),
                    )
                }
            },
            SmnKind::UnsubscribeConfirmation => {
                self.count(WebhookResult::Accepted);
                EventsAnswer::new(
                    StatusCode::OK,
                    json!({ "status": "acknowledged" }).to_string(),
                )
            }
        }
    }
}

impl EventsEndpoint for Webhook {
    fn served(&self) -> bool {
        self.live.load().is_some()
    }

    fn admit(&self, head: &Parts) -> Result<(), EventsAnswer> {
        let Some(live) = self.live.load_full() else {
            return Err(not_found());
        };
        if !live.token.admits(&head.headers, head.uri.query()) {
            return Err(self
                .refuse(
                    WebhookResult::Unauthorized,
                    StatusCode::UNAUTHORIZED,
                    "a valid token is required (Authorization: Bearer, or the token query parameter)",
                )
                .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        }
        if !live.bucket.try_acquire() {
            return Err(self
                .refuse(
                    WebhookResult::Throttled,
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate limit (events.webhook.rate_limit) exceeded",
                )
                .with_header(header::RETRY_AFTER, HeaderValue::from_static("1")));
        }
        if !acceptable_content_type(&head.headers) {
            return Err(self.refuse(
                WebhookResult::Invalid,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the body must be JSON: Content-Type application/json, text/plain or \
                 application/cloudevents+json (UTF-8)",
            ));
        }
        let announced = head
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if announced.is_some_and(|n| n > MAX_EVENTS_BODY_BYTES as u64) {
            return Err(self.body_failed(BodyFailure::TooLarge));
        }
        Ok(())
    }

    fn body_failed(&self, failure: BodyFailure) -> EventsAnswer {
        match failure {
            BodyFailure::TooLarge => self.refuse(
                WebhookResult::TooLarge,
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the body is larger than {MAX_EVENTS_BODY_BYTES} bytes"),
            ),
            BodyFailure::TimedOut => self.refuse(
                WebhookResult::Invalid,
                StatusCode::REQUEST_TIMEOUT,
                "the body did not arrive in time",
            ),
            BodyFailure::Broken => self.refuse(
                WebhookResult::Invalid,
                StatusCode::BAD_REQUEST,
                "the body could not be read",
            ),
        }
    }

    fn receive<'a>(&'a self, _head: &'a Parts, body: Bytes) -> EventsFuture<'a> {
        Box::pin(self.receive_body(body))
    }
}

fn not_found() -> EventsAnswer {
    EventsAnswer::new(
        StatusCode::NOT_FOUND,
        json!({ "error": "not found" }).to_string(),
    )
}

/// One of [`CONTENT_TYPES`], in UTF-8 if a charset is named.
fn acceptable_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    if !CONTENT_TYPES.contains(&essence.as_str()) {
        return false;
    }
    parts.all(|p| match p.split_once('=') {
        Some((k, v)) if k.trim().eq_ignore_ascii_case("charset") => {
            let v = v.trim().trim_matches('"');
            v.eq_ignore_ascii_case("utf-8") || v.eq_ignore_ascii_case("utf8")
        }
        _ => true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_text_are_taken_in_utf8() {
        let ok = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(v));
            acceptable_content_type(&h)
        };
        assert!(ok("application/json"));
        assert!(ok("Application/JSON; charset=UTF-8"));
        assert!(ok("text/plain; charset=\"utf-8\""));
        assert!(ok("application/cloudevents+json; charset=utf-8"));
        assert!(!ok("text/plain; charset=iso-8859-1"));
        assert!(!ok("application/x-www-form-urlencoded"));
        assert!(!ok("text/html"));
        assert!(!acceptable_content_type(&HeaderMap::new()));
    }
}
