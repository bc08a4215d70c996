//! Content negotiation for `/metrics`, as client_golang (prometheus/common `expfmt`)
//! does it, so that Prometheus 2 and 3 get what they ask for:
//!
//! - the `Accept` clauses are taken by quality, highest first (the more specific first
//!   among equals);
//! - the first clause this exporter can serve wins: OpenMetrics 1.0.0 or 0.0.1, or the
//!   text format 0.0.4 or 1.0.0 (Prometheus 3 asks for 1.0.0); a wildcard, no header or
//!   nothing servable gets text 0.0.4, as curl users expect;
//! - an `escaping=` parameter (`allow-utf-8`, `underscores`, `dots`, `values`) seen on
//!   the way is answered back; otherwise `underscores`, client_golang's default;
//! - the `Content-Type` is client_golang's, byte for byte: `TYPE; version=V;
//!   charset=utf-8; escaping=E`.
//!
//! Every metric and label name of this exporter is a legacy (ASCII) name, so no
//! escaping scheme changes a byte of the body, and text 1.0.0 is the same bytes as
//! 0.0.4. Only the headers differ.

use super::exposition::Format;

/// What a scrape is answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// How the body is written.
    pub format: Format,
    /// The `Content-Type` header.
    pub content_type: String,
}

/// The escaping schemes of the exposition formats (prometheus/common `model`).
const ESCAPING_SCHEMES: [&str; 4] = ["allow-utf-8", "underscores", "dots", "values"];
/// client_golang's default `NameEscapingScheme`.
const DEFAULT_ESCAPING: &str = "underscores";

/// One clause of an `Accept` header.
struct Clause<'a> {
    media_type: String,
    version: Option<&'a str>,
    escaping: Option<&'a str>,
    q: f32,
}

fn parse(accept: &str) -> Vec<Clause<'_>> {
    let mut clauses: Vec<Clause<'_>> = accept
        .split(',')
        .filter_map(|clause| {
            let mut parts = clause.split(';').map(str::trim);
            let media_type = parts.next().filter(|m| !m.is_empty())?.to_ascii_lowercase();
            let mut c = Clause {
                media_type,
                version: None,
                escaping: None,
                q: 1.0,
            };
            for p in parts {
                let Some((k, v)) = p.split_once('=') else {
                    continue;
                };
                let v = v.trim().trim_matches('"');
                match k.trim().to_ascii_lowercase().as_str() {
                    "version" => c.version = Some(v),
                    "escaping" => c.escaping = Some(v),
                    "q" => c.q = v.parse().unwrap_or(0.0),
                    _ => {}
                }
            }
            Some(c)
        })
        .collect();
    // Stable: equal clauses keep the order the client gave.
    let wildcards = |c: &Clause<'_>| c.media_type.matches('*').count();
    clauses.sort_by(|a, b| {
        b.q.partial_cmp(&a.q)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(wildcards(a).cmp(&wildcards(b)))
    });
    clauses
}

/// The servable (format, content type without escaping) a clause asks for, if any.
fn servable(c: &Clause<'_>) -> Option<(Format, &'static str)> {
    match (c.media_type.as_str(), c.version) {
        ("application/openmetrics-text", Some("1.0.0")) => Some((
            Format::OpenMetrics,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )),
        // As in expfmt: OpenMetrics without a version means 0.0.1.
        ("application/openmetrics-text", Some("0.0.1") | None) => Some((
            Format::OpenMetrics,
            "application/openmetrics-text; version=0.0.1; charset=utf-8",
        )),
        ("text/plain", Some("0.0.4") | None) | ("*/*" | "text/*", _) => {
            Some((Format::Text, "text/plain; version=0.0.4; charset=utf-8"))
        }
        ("text/plain", Some("1.0.0")) => {
            Some((Format::Text, "text/plain; version=1.0.0; charset=utf-8"))
        }
        _ => None,
    }
}

/// The answer to a scrape with this `Accept` header.
pub fn negotiate(accept: Option<&str>) -> Negotiated {
    let mut escaping = DEFAULT_ESCAPING;
    let mut chosen = (Format::Text, "text/plain; version=0.0.4; charset=utf-8");
    for c in parse(accept.unwrap_or("")) {
        if let Some(e) = c.escaping.filter(|e| ESCAPING_SCHEMES.contains(e)) {
            escaping = e;
        }
        // q=0 is "not acceptable" (RFC 9110).
        if let Some(s) = servable(&c).filter(|_| c.q > 0.0) {
            chosen = s;
            break;
        }
    }
    Negotiated {
        format: chosen.0,
        content_type: format!("{}; escaping={escaping}", chosen.1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ct(accept: Option<&str>) -> String {
        negotiate(accept).content_type
    }

    #[test]
    fn quality_order_and_escaping() {
        assert_eq!(
            ct(None),
            "text/plain; version=0.0.4; charset=utf-8; escaping=underscores"
        );
        assert_eq!(
            ct(Some("text/plain;version=0.0.4;q=0.2,application/openmetrics-text;version=1.0.0;escaping=dots;q=0.9")),
            "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=dots"
        );
        // An escaping scheme nobody knows is ignored.
        assert_eq!(
            ct(Some("text/plain;version=1.0.0;escaping=bogus")),
            "text/plain; version=1.0.0; charset=utf-8; escaping=underscores"
        );
        // Protobuf is skipped, not answered with something else at its quality.
        assert_eq!(
            negotiate(Some("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,text/plain;version=0.0.4;q=0.3")).format,
            Format::Text
        );
        assert_eq!(negotiate(Some("application/json")).format, Format::Text);
        assert_eq!(
            negotiate(Some(
                "application/openmetrics-text;version=1.0.0;q=0,text/plain;q=0.1"
            ))
            .format,
            Format::Text
        );
    }
}
