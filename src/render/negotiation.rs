//! Content negotiation for `/metrics`, as client_golang (prometheus/common `expfmt`)
//! does it, so that Prometheus 2 and 3 get what they ask for:
//!
//! - the `Accept` clauses are taken by quality, highest first (the more specific first
//!   among equals); a clause whose `q` is not an RFC 9110 qvalue (a decimal in [0, 1]
//!   with at most three decimals: not `NaN`, `inf`, `1e309` or `-1`) is skipped;
//! - the first clause this exporter can serve wins: OpenMetrics 1.0.0 or 0.0.1, or the
//!   text format 0.0.4 or 1.0.0 (Prometheus 3 asks for 1.0.0); a wildcard, no header or
//!   nothing servable gets text 0.0.4, as curl users expect;
//! - an `escaping=` parameter (`allow-utf-8`, `underscores`, `dots`, `values`) seen on
//!   the way is answered back; otherwise `underscores`, client_golang's default;
//! - the `Content-Type` is client_golang's, byte for byte: `TYPE; version=V;
//!   charset=utf-8; escaping=E`.
//!
//! [`accepts_gzip`] reads `Accept-Encoding` with the same element and `q` parser.
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

/// An RFC 9110 qvalue (`weight = OWS ";" OWS "q=" qvalue`), in thousandths:
/// `"0" [ "." 0*3DIGIT ]` or `"1" [ "." 0*3("0") ]`. Anything else (`NaN`, `inf`,
/// `1e309`, `-1`, `0.0001`, `2`, empty) is `None`. Integers, so that sorting by
/// quality is a total order.
pub fn qvalue(s: &str) -> Option<u16> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = frac
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// One element of a comma-separated list with weights (`Accept`, `Accept-Encoding`):
/// its value (a media range or a coding) and its quality in thousandths.
struct Element<'a> {
    value: &'a str,
    /// What follows the value: `;`-separated parameters.
    params: &'a str,
    q: u16,
}

impl<'a> Element<'a> {
    /// The parameters as (name, value), names as sent, both trimmed.
    fn params(&self) -> impl Iterator<Item = (&'a str, &'a str)> {
        params(self.params)
    }
}

fn params(list: &str) -> impl Iterator<Item = (&str, &str)> {
    list.split(';').filter_map(|p| {
        let (k, v) = p.split_once('=')?;
        Some((k.trim(), v.trim()))
    })
}

/// The elements of `list`. An empty element is skipped, and so is one whose `q` is
/// not a qvalue or is given twice: a malformed weight is not guessed at. Parameter
/// names are case-insensitive (RFC 9110 5.6.6); no `q` means 1.
fn elements(list: &str) -> impl Iterator<Item = Element<'_>> {
    list.split(',').filter_map(|element| {
        let (value, rest) = element.split_once(';').unwrap_or((element, ""));
        let value = value.trim();
        if value.is_empty() {
            return None;
        }
        let mut q = None;
        for (k, v) in params(rest) {
            if k.eq_ignore_ascii_case("q") {
                if q.is_some() {
                    return None;
                }
                q = Some(qvalue(v)?);
            }
        }
        Some(Element {
            value,
            params: rest,
            q: q.unwrap_or(1000),
        })
    })
}

/// Whether a scrape with these `Accept-Encoding` header values may be gzipped, as RFC
/// 9110 (12.5.3) reads them: codings are case-insensitive (`x-gzip` is `gzip`); `gzip`
/// listed with a q above 0 allows it and with q=0 forbids it; when `gzip` is not
/// listed, `*` decides the same way; neither listed (or no header) means no gzip. An
/// element with an invalid q is skipped.
pub fn accepts_gzip<'a>(values: impl IntoIterator<Item = &'a str>) -> bool {
    let mut gzip: Option<u16> = None;
    let mut any: Option<u16> = None;
    for value in values {
        for e in elements(value) {
            let slot =
                if e.value.eq_ignore_ascii_case("gzip") || e.value.eq_ignore_ascii_case("x-gzip") {
                    &mut gzip
                } else if e.value == "*" {
                    &mut any
                } else {
                    continue;
                };
            *slot = Some(slot.map_or(e.q, |q| q.max(e.q)));
        }
    }
    gzip.or(any).is_some_and(|q| q > 0)
}

/// One clause of an `Accept` header.
struct Clause<'a> {
    media_type: &'a str,
    version: Option<&'a str>,
    escaping: Option<&'a str>,
    q: u16,
}

fn parse(accept: &str) -> Vec<Clause<'_>> {
    let mut clauses: Vec<Clause<'_>> = elements(accept)
        .map(|e| {
            let mut c = Clause {
                media_type: e.value,
                version: None,
                escaping: None,
                q: e.q,
            };
            for (k, v) in e.params() {
                let v = v.trim_matches('"');
                if k.eq_ignore_ascii_case("version") {
                    c.version = Some(v);
                } else if k.eq_ignore_ascii_case("escaping") {
                    c.escaping = Some(v);
                }
            }
            c
        })
        .collect();
    // Highest quality first, the more specific first among equals; stable, so equal
    // clauses keep the order the client gave. Integer keys: a total order.
    clauses.sort_by_key(|c| (std::cmp::Reverse(c.q), c.media_type.matches('*').count()));
    clauses
}

/// The servable (format, content type without escaping) a clause asks for, if any.
fn servable(c: &Clause<'_>) -> Option<(Format, &'static str)> {
    match (c.media_type.to_ascii_lowercase().as_str(), c.version) {
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
        if let Some(s) = servable(&c).filter(|_| c.q > 0) {
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

    #[test]
    fn qvalues_are_rfc_9110_decimals() {
        for (s, want) in [
            ("0", Some(0)),
            ("0.", Some(0)),
            ("0.0", Some(0)),
            ("0.000", Some(0)),
            ("0.001", Some(1)),
            ("0.5", Some(500)),
            ("0.75", Some(750)),
            ("1", Some(1000)),
            ("1.", Some(1000)),
            ("1.000", Some(1000)),
            ("1.001", None),
            ("0.0001", None),
            ("2", None),
            ("-1", None),
            ("-0", None),
            ("+0.5", None),
            (".5", None),
            ("", None),
            ("NaN", None),
            ("nan", None),
            ("inf", None),
            ("1e309", None),
            ("1e0", None),
            ("0x1", None),
            ("0.5 ", None),
            ("00.5", None),
            ("0.٥", None),
        ] {
            assert_eq!(qvalue(s), want, "{s:?}");
        }
    }

    #[test]
    fn invalid_qvalues_skip_their_clause_and_never_panic() {
        // 24 clauses and more with q=NaN panicked the sort ("comparison function does
        // not correctly implement a total order").
        for n in [24, 25, 64, 3000] {
            let accept = ["text/plain;q=NaN", "text/plain;q=0.1", "text/plain;q=0.2"]
                .iter()
                .cycle()
                .take(n)
                .copied()
                .collect::<Vec<_>>()
                .join(",");
            assert_eq!(
                ct(Some(&accept)),
                "text/plain; version=0.0.4; charset=utf-8; escaping=underscores"
            );
        }
        // An invalid q is not "1": the clause is skipped.
        for q in ["NaN", "inf", "1e309", "-1", "", "2", "0.5.5"] {
            assert_eq!(
                negotiate(Some(&format!(
                    "application/openmetrics-text;version=1.0.0;q={q},text/plain;version=1.0.0;q=0.1"
                )))
                .format,
                Format::Text,
                "q={q}"
            );
        }
        // Parameter names and media types are case-insensitive.
        assert_eq!(
            ct(Some(
                "text/plain;q=0.5,Application/OpenMetrics-Text;Version=1.0.0;Q=0.9"
            )),
            "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores"
        );
        assert_eq!(
            ct(Some(
                "application/openmetrics-text;version=1.0.0;Q=0,text/plain;q=0.1"
            )),
            "text/plain; version=0.0.4; charset=utf-8; escaping=underscores"
        );
    }

    #[test]
    fn gzip_negotiation() {
        let gzip = |v: &[&str]| accepts_gzip(v.iter().copied());
        assert!(!gzip(&[]));
        assert!(gzip(&["deflate, gzip;q=1.0, *;q=0.5"]));
        assert!(gzip(&["gzip"]));
        assert!(gzip(&["GZIP"]));
        assert!(gzip(&["Gzip ; Q=0.5"]));
        assert!(gzip(&["x-gzip"]));
        assert!(gzip(&["*"]));
        assert!(gzip(&["deflate", "gzip"]), "several header lines");
        for no in [
            "gzip;q=0",
            "gzip;q=0.0",
            "gzip;q=0.000",
            "gzip;Q=0",
            "gzip; q=0",
            "gzip;q=0, *",
            "*;q=0",
            "*;q=0.000",
            "identity",
            "deflate, br",
            "",
            ",,,",
            "gzip;q=NaN",
            "gzip;q=2",
            "gzip;q=-1",
            "gzip;q=1e309",
            "gzip;q=1;q=0",
        ] {
            assert!(!gzip(&[no]), "{no:?}");
        }
    }
}
