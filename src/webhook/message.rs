//! An SMN HTTP message as posted to a subscription's endpoint: its type, the bounds
//! on its fields, its canonical (signed) string and the region its topic names.

use serde::Deserialize;

use super::errors::BodyError;

/// Longest URL, topic, ID or timestamp taken from a message.
pub(crate) const MAX_URL_BYTES: usize = 2048;
pub(crate) const MAX_FIELD_BYTES: usize = 512;
pub(crate) const MAX_SIGNATURE_BYTES: usize = 4096;

/// The three message types SMN posts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub(crate) enum SmnKind {
    Notification,
    SubscriptionConfirmation,
    UnsubscribeConfirmation,
}

impl SmnKind {
    pub(crate) fn parse(s: &str) -> Option<SmnKind> {
        match s {
            "Notification" => Some(SmnKind::Notification),
            "SubscriptionConfirmation" => Some(SmnKind::SubscriptionConfirmation),
            "UnsubscribeConfirmation" => Some(SmnKind::UnsubscribeConfirmation),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SmnKind::Notification => "Notification",
            SmnKind::SubscriptionConfirmation => "SubscriptionConfirmation",
            SmnKind::UnsubscribeConfirmation => "UnsubscribeConfirmation",
        }
    }
}

/// An SMN HTTP message, as posted to a subscription's endpoint.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct SmnMessage {
    #[serde(rename = "type")]
    pub kind: SmnKind,
    pub topic_urn: String,
    pub message_id: String,
    pub message: String,
    pub timestamp: String,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub subscribe_url: Option<String>,
    #[serde(default)]
    pub signature: Option<String>,
    #[serde(default)]
    pub signature_version: Option<String>,
    #[serde(default)]
    pub signing_cert_url: Option<String>,
}

impl SmnMessage {
    /// Bounds on what may be logged or fetched, and the fields each type needs.
    pub(crate) fn check_fields(&self) -> Result<(), BodyError> {
        let limits: [(&'static str, Option<&String>, usize); 8] = [
            ("topic_urn", Some(&self.topic_urn), MAX_FIELD_BYTES),
            ("message_id", Some(&self.message_id), MAX_FIELD_BYTES),
            ("timestamp", Some(&self.timestamp), MAX_FIELD_BYTES),
            ("subject", self.subject.as_ref(), MAX_FIELD_BYTES),
            ("subscribe_url", self.subscribe_url.as_ref(), MAX_URL_BYTES),
            (
                "signing_cert_url",
                self.signing_cert_url.as_ref(),
                MAX_URL_BYTES,
            ),
            ("signature", self.signature.as_ref(), MAX_SIGNATURE_BYTES),
            ("signature_version", self.signature_version.as_ref(), 16),
        ];
        for (field, value, max) in limits {
            if value.is_some_and(|v| v.len() > max) {
                return Err(BodyError::SmnTooLong(field));
            }
        }
        if self.kind != SmnKind::Notification && self.subscribe_url.is_none() {
            return Err(BodyError::SmnMissing(self.kind.as_str(), "subscribe_url"));
        }
        Ok(())
    }

    /// The string SMN signs: the type's fields in alphabetical order, each written
    /// `name\nvalue\n`; a Notification's `subject` only when present.
    pub(crate) fn canonical(&self) -> String {
        let mut fields: Vec<(&str, &str)> =
            vec![("message", &self.message), ("message_id", &self.message_id)];
        match self.kind {
            SmnKind::Notification => {
                if let Some(subject) = &self.subject {
                    fields.push(("subject", subject));
                }
            }
            SmnKind::SubscriptionConfirmation | SmnKind::UnsubscribeConfirmation => {
                fields.push(("subscribe_url", self.subscribe_url.as_deref().unwrap_or("")));
            }
        }
        fields.push(("timestamp", &self.timestamp));
        fields.push(("topic_urn", &self.topic_urn));
        fields.push(("type", self.kind.as_str()));
        let mut out = String::new();
        for (name, value) in fields {
            out.push_str(name);
            out.push('\n');
            out.push_str(value);
            out.push('\n');
        }
        out
    }

    /// The region of the topic (`urn:smn:<region>:<project>:<topic>`), if it names a
    /// plausible one.
    pub(crate) fn region(&self) -> Option<String> {
        let mut parts = self.topic_urn.split(':');
        let (Some("urn"), Some("smn"), Some(region)) = (parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let plausible = !region.is_empty()
            && region.len() <= 64
            && region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        plausible.then(|| region.to_string())
    }
}
