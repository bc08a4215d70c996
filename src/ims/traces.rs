//! Cloud Trace Service: the trace model (what a pulled or pushed trace says) and the
//! `list_traces` operation (`GET /v3/{project_id}/traces`, newest first, paged by
//! `next=<marker>`), with the same integrity rules as member lists: a 200 without a
//! `traces` list, a wrong type or an oversized answer fails the read.
//!
//! Which traces matter and which images they name is the event layer's business
//! ([`crate::poll::events`]); this module only reads and checks them.

use std::collections::HashSet;

use reqwest::Url;
use serde::Deserialize;

use super::client::{ApiTarget, ImsClient};
use super::error::ApiError;
use super::transport::CallContext;
use super::url::url;

pub const OP_LIST_TRACES: &str = "list_traces";
/// Traces per page: the API's maximum.
pub const TRACES_PAGE_SIZE: u32 = 200;
/// Upper bound on pages of one read (200 × 50 = 10,000 traces: far beyond the IMS
/// traces of any window; a marker that never ends fails the read).
const MAX_TRACE_PAGES: usize = 50;
/// Longest string kept from a trace field (IDs, names, addresses).
const MAX_FIELD_BYTES: usize = 512;
/// Longest `request` body looked into for image IDs.
pub const MAX_REQUEST_BYTES: usize = 64 << 10;

/// Who made the traced call.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct TraceUser {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub user_name: Option<String>,
}

/// One trace, as the SDK model `Traces` and the pushed shapes carry it. Unknown
/// fields are ignored; every field the exporter reads but `trace_id` may be absent.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Trace {
    pub trace_id: String,
    #[serde(default)]
    pub trace_name: Option<String>,
    #[serde(default)]
    pub service_type: Option<String>,
    #[serde(default)]
    pub resource_type: Option<String>,
    #[serde(default)]
    pub resource_id: Option<String>,
    #[serde(default)]
    pub resource_name: Option<String>,
    /// The request body: a JSON string as CTS lists it, or an object as some pushes
    /// carry it.
    #[serde(default)]
    pub request: Option<serde_json::Value>,
    /// Operation time, Unix milliseconds.
    #[serde(default)]
    pub time: Option<i64>,
    /// When CTS recorded it (after `time`), Unix milliseconds.
    #[serde(default)]
    pub record_time: Option<i64>,
    #[serde(default)]
    pub user: Option<TraceUser>,
    #[serde(default)]
    pub source_ip: Option<String>,
    #[serde(default)]
    pub request_id: Option<String>,
}

impl Trace {
    /// Checks the fields that end up in logs, labels and pages: bounded, and a
    /// non-empty `trace_id`.
    pub fn check(&self) -> Result<(), String> {
        if self.trace_id.is_empty() {
            return Err("a trace has an empty trace_id".into());
        }
        let strings = [
            ("trace_id", Some(&self.trace_id)),
            ("trace_name", self.trace_name.as_ref()),
            ("service_type", self.service_type.as_ref()),
            ("resource_type", self.resource_type.as_ref()),
            ("resource_id", self.resource_id.as_ref()),
            ("resource_name", self.resource_name.as_ref()),
            ("source_ip", self.source_ip.as_ref()),
            ("request_id", self.request_id.as_ref()),
        ];
        let user = self.user.as_ref();
        let users = [
            ("user.id", user.and_then(|u| u.id.as_ref())),
            ("user.name", user.and_then(|u| u.name.as_ref())),
            ("user.user_name", user.and_then(|u| u.user_name.as_ref())),
        ];
        for (field, value) in strings.into_iter().chain(users) {
            if let Some(v) = value.filter(|v| v.len() > MAX_FIELD_BYTES) {
                return Err(format!(
                    "trace {}: {field} is {} bytes (at most {MAX_FIELD_BYTES})",
                    super::error::excerpt(&self.trace_id, 64),
                    v.len()
                ));
            }
        }
        Ok(())
    }

    /// Who made the call: `user.name`, else `user.user_name`, else `user.id`.
    pub fn actor(&self) -> Option<&str> {
        let u = self.user.as_ref()?;
        [&u.name, &u.user_name, &u.id]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .find(|s| !s.is_empty())
    }
}

/// `GET /v3/{project_id}/traces`.
#[derive(Debug, Deserialize)]
struct TracePage {
    traces: Vec<Trace>,
    #[serde(default)]
    meta_data: Option<MetaData>,
}

#[derive(Debug, Deserialize)]
struct MetaData {
    #[serde(default)]
    marker: Option<String>,
}

/// Traces pushed to the webhook, on their way to the event layer; `region` is the
/// region the push names (an SMN topic's), if any.
#[derive(Debug, Clone)]
pub struct PushedTraces {
    pub traces: Vec<Trace>,
    pub region: Option<String>,
}

impl ImsClient {
    /// The IMS traces of the target's project recorded with an operation time in
    /// `[from_ms, to_ms]`, every page, signed with the target's credentials.
    pub async fn list_traces(
        &self,
        target: &ApiTarget,
        cts_endpoint: &Url,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Trace>, ApiError> {
        let op = OP_LIST_TRACES;
        let (from, to, limit) = (
            from_ms.to_string(),
            to_ms.to_string(),
            TRACES_PAGE_SIZE.to_string(),
        );
        let segments = ["v3", target.project_id.as_str(), "traces"];
        let ctx: CallContext<'_> = target.call_context();
        let mut traces: Vec<Trace> = Vec::new();
        let mut seen_markers = HashSet::new();
        let mut marker: Option<String> = None;
        for _ in 0..MAX_TRACE_PAGES {
            let mut query = vec![
                ("trace_type", "system"),
                ("service_type", "IMS"),
                ("from", from.as_str()),
                ("to", to.as_str()),
                ("limit", limit.as_str()),
            ];
            if let Some(m) = &marker {
                query.push(("next", m.as_str()));
            }
            let url = url(op, cts_endpoint, &segments, &query)?;
            let page = self.trace_page(&ctx, url).await?;
            traces.extend(page.traces);
            match page
                .meta_data
                .and_then(|m| m.marker)
                .filter(|m| !m.is_empty())
            {
                None => return Ok(traces),
                Some(next) => {
                    if !seen_markers.insert(next.clone()) {
                        return Err(ApiError::Paging {
                            operation: op,
                            message: format!(
                                "marker {:?} repeats after {} traces",
                                super::error::excerpt(&next, 64),
                                traces.len()
                            ),
                        });
                    }
                    marker = Some(next);
                }
            }
        }
        Err(ApiError::Paging {
            operation: op,
            message: format!("more than {MAX_TRACE_PAGES} pages"),
        })
    }

    /// One page of traces, each checked.
    async fn trace_page(&self, ctx: &CallContext<'_>, url: Url) -> Result<TracePage, ApiError> {
        let op = OP_LIST_TRACES;
        let page: TracePage = self.transport().get_json(op, ctx, url).await?;
        for t in &page.traces {
            t.check().map_err(|message| ApiError::Decode {
                operation: op,
                message,
                request_id: None,
            })?;
        }
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_without_its_list_is_malformed() {
        for body in ["{}", "[]", r#"{"traces": {}}"#, r#"{"traces": null}"#] {
            assert!(serde_json::from_str::<TracePage>(body).is_err(), "{body}");
        }
        let page: TracePage =
            serde_json::from_str(r#"{"traces": [], "meta_data": {"count": 0, "marker": null}}"#)
                .unwrap();
        assert!(page.traces.is_empty());
    }

    #[test]
    fn the_actor_is_the_name_else_the_id() {
        let mut t = Trace {
            trace_id: "t".into(),
            ..Trace::default()
        };
        assert_eq!(t.actor(), None);
        t.user = Some(TraceUser {
            id: Some("u1".into()),
            ..TraceUser::default()
        });
        assert_eq!(t.actor(), Some("u1"));
        t.user.as_mut().unwrap().name = Some("alice".into());
        assert_eq!(t.actor(), Some("alice"));
    }

    #[test]
    fn long_fields_fail_the_check() {
        let t = Trace {
            trace_id: "t".into(),
            source_ip: Some("x".repeat(MAX_FIELD_BYTES + 1)),
            ..Trace::default()
        };
        assert!(t.check().unwrap_err().contains("source_ip"));
        assert!(Trace::default().check().is_err());
    }
}
