//! Property tests: no input makes the decoders, the timestamp parser, the signer or the
//! config loader panic, and what goes in comes out (label values, paths, queries).

use std::collections::BTreeMap;

use ims_exporter::auth::credentials::Secret;
use ims_exporter::auth::signer::{self, RequestParts};
use ims_exporter::config;
use ims_exporter::ids::Source;
use ims_exporter::ims::model::{ImageList, Member, MemberList};
use ims_exporter::ims::url::build_url;
use ims_exporter::render::negotiation::{accepts_gzip, negotiate};
use ims_exporter::render::{Format, Metrics, SelfMetrics};
use ims_exporter::state::{ImageKey, ImageMeta, MemberSet, Store};
use ims_exporter::timestamp::parse_timestamp;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

use crate::support;
use std::sync::Arc;

/// Any JSON value, nested a little.
fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        ".*".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("members".to_string()),
                    Just("member_id".to_string()),
                    Just("page_info".to_string()),
                    Just("next_marker".to_string()),
                    Just("status".to_string()),
                    Just("images".to_string()),
                    Just("id".to_string()),
                    ".{0,8}".prop_map(String::from)
                ],
                inner,
                0..6
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn member(
    id: String,
    kind: String,
    status: String,
    urn: Option<String>,
    created: Option<String>,
) -> Member {
    Member {
        member_id: id,
        member_type: Some(kind),
        status: Some(status),
        created_at: created.clone(),
        updated_at: created,
        image_id: None,
        schema: None,
        urn,
    }
}

fn pick(values: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop::sample::select(values).prop_map(str::to_string)
}

/// A `q` value, mostly not a valid one.
fn qvalue() -> impl Strategy<Value = String> {
    prop_oneof![
        pick(&[
            "NaN", "nan", "-NaN", "inf", "-inf", "infinity", "1e309", "-1e309", "1e-309", "-1",
            "-0", "", "0", "0.", "0.0", "0.000", "0.0001", "0.5", "1", "1.0", "1.000", "1.001",
            "2", " 0.5 ", "\"0.5\"", "0,5",
        ]),
        "[0-9.eE+-]{0,8}",
        any::<f64>().prop_map(|f| f.to_string()),
        any::<f32>().prop_map(|f| format!("{f:e}")),
    ]
}

/// One element of an `Accept` or `Accept-Encoding` list.
fn clause() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            pick(&[
                "text/plain",
                "application/openmetrics-text",
                "*/*",
                "text/*",
                "gzip",
                "GZIP",
                "x-gzip",
                "*",
                "identity",
                "",
                " ",
            ]),
            "[ -~]{0,12}",
        ],
        prop::collection::vec(
            prop_oneof![
                qvalue().prop_map(|q| format!("q={q}")),
                qvalue().prop_map(|q| format!("Q = {q}")),
                pick(&[
                    "version=1.0.0",
                    "version=0.0.4",
                    "escaping=dots",
                    "escaping=bogus",
                    "q",
                    "=",
                    ";"
                ]),
                "[ -~]{0,10}",
            ],
            0..4,
        ),
    )
        .prop_map(|(value, params)| {
            let mut c = value;
            for p in params {
                c.push(';');
                c.push_str(&p);
            }
            c
        })
}

/// A header value: a few clauses, thousands of them, or anything at all.
fn header() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(clause(), 0..40).prop_map(|c| c.join(",")),
        prop::collection::vec(clause(), 0..3000).prop_map(|c| c.join(",")),
        ".{0,200}",
        "[,; =q0-9.NaIinf*/]{0,400}",
    ]
}

/// `cases` cases a test; failures are kept beside this file, in
/// `properties.proptest-regressions`, and re-run first. (Proptest's default would put
/// them in `tests/proptest-regressions/`, next to the directory holding `main.rs`.)
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(64))]

    /// No `Accept` or `Accept-Encoding` value panics the negotiation (issue 19, item
    /// 1), and each answer is one of the formats served.
    #[test]
    fn no_accept_or_accept_encoding_header_panics(
        accept in header(), encodings in prop::collection::vec(header(), 0..3)
    ) {
        let n = negotiate(Some(&accept));
        prop_assert!(
            [
                "text/plain; version=0.0.4; charset=utf-8; escaping=",
                "text/plain; version=1.0.0; charset=utf-8; escaping=",
                "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=",
                "application/openmetrics-text; version=0.0.1; charset=utf-8; escaping=",
            ]
            .iter()
            .any(|t| n.content_type.starts_with(t)),
            "{}", n.content_type
        );
        let gzip = accepts_gzip(encodings.iter().map(String::as_str));
        // Only a header naming gzip or `*` can allow it.
        if gzip {
            prop_assert!(encodings.iter().any(|e| e.to_ascii_lowercase().contains("gzip") || e.contains('*')));
        }
        // The same values as one header: the same answer.
        prop_assert_eq!(accepts_gzip([encodings.join(",").as_str()]), gzip);
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn decoders_never_panic_on_any_json(v in json()) {
        let text = v.to_string();
        let _ = serde_json::from_str::<MemberList>(&text);
        let _ = serde_json::from_str::<Member>(&text);
        let _ = serde_json::from_str::<ImageList>(&text);
        if let Ok(list) = serde_json::from_value::<MemberList>(v) {
            let _ = MemberSet::from_api(list.members);
        }
    }

    #[test]
    fn decoders_never_panic_on_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = serde_json::from_slice::<MemberList>(&bytes);
        let _ = serde_json::from_slice::<ImageList>(&bytes);
    }

    #[test]
    fn timestamps_never_panic(s in ".{0,40}") {
        let _ = parse_timestamp(&s);
    }

    #[test]
    fn timestamps_parse_every_documented_form(
        // 2000-01-02 to 2100-01-01: the years accepted, with room for any offset.
        secs in 946_771_200i64..4_102_444_800, frac in 0u32..1_000_000, offset_min in -720i32..=840, form in 0usize..4
    ) {
        let t = time::OffsetDateTime::from_unix_timestamp(secs).unwrap();
        let offset = time::UtcOffset::from_whole_seconds(offset_min / 15 * 15 * 60).unwrap();
        let local = t.to_offset(offset);
        let base = format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}", local.year(), local.month() as u8, local.day(), local.hour(), local.minute(), local.second());
        let (h, m) = (offset.whole_hours(), offset.minutes_past_hour());
        let sign = if offset.is_negative() { '-' } else { '+' };
        let zone = format!("{sign}{:02}:{:02}", h.abs(), m.abs());
        let (text, expected) = match form {
            0 => (format!("{base}{zone}"), secs as f64),
            1 => (format!("{base}.{frac:06}{zone}"), secs as f64 + frac as f64 / 1e6),
            2 if offset.is_utc() => (format!("{base}Z"), secs as f64),
            _ if offset.is_utc() => (base.replace('T', " "), secs as f64),
            _ => (format!("{base}{zone}"), secs as f64),
        };
        let got = parse_timestamp(&text).unwrap();
        prop_assert!((got - expected).abs() < 1e-6, "{} -> {} want {}", text, got, expected);
    }

    #[test]
    fn signing_is_stable_and_verifies_for_any_path_and_query(
        segments in prop::collection::vec(".{1,12}", 1..5),
        query in prop::collection::vec((".{1,8}", ".{0,12}"), 0..4),
        sk in "[ -~]{1,40}",
    ) {
        let base = reqwest::Url::parse("https://ims.example.com").unwrap();
        let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
        let q: Vec<(&str, &str)> = query.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let Ok(url) = build_url(&base, &segs, &q) else {
            // Only `.` and `..` are refused; nothing else may be.
            prop_assert!(segs.iter().any(|s| *s == "." || *s == ".."));
            return Ok(());
        };
        // Neither the path nor the query can be changed by what the values hold.
        let decoded: Vec<String> = url.path_segments().unwrap().map(|s| percent_encoding::percent_decode_str(s).decode_utf8().unwrap().into_owned()).collect();
        prop_assert_eq!(&decoded, &segments);
        let pairs: Vec<(String, String)> = url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        prop_assert_eq!(&pairs, &query);
        prop_assert!(url.fragment().is_none());

        let headers = vec![("host".to_string(), "ims.example.com".to_string()), ("x-sdk-date".to_string(), "20261122T120000Z".to_string())];
        let parts = RequestParts { method: "GET", path: url.path(), query: &pairs, headers: &headers, body: b"" };
        let secret = Secret::new(sk);
        let a = signer::authorization("AK", &secret, &parts).unwrap();
        let b = signer::authorization("AK", &secret, &parts).unwrap();
        prop_assert_eq!(&a, &b);
        let parsed = signer::parse_authorization(&a).unwrap();
        prop_assert!(signer::verify(&parsed, &secret, &parts));
        prop_assert!(signer::canonical_uri(url.path()).ends_with('/'));
    }

    #[test]
    fn config_loading_never_panics(text in "[ -~\\n]{0,300}") {
        let _ = config::parse(&text, "fuzz.yaml", &|_| None);
    }

    #[test]
    fn config_loading_never_panics_on_mutated_configs(
        cut in 0usize..400, insert in "[ -~\\n]{0,20}"
    ) {
        let good = include_str!("../../config.example.yaml");
        let mut at = cut.min(good.len());
        while !good.is_char_boundary(at) { at -= 1; }
        let text = format!("{}{}{}", &good[..at], insert, &good[at..]);
        let _ = config::parse(&text, "fuzz.yaml", &|k| (k.starts_with("HUAWEICLOUD_SDK_")).then(|| "x".to_string()));
    }

    /// Whatever the API puts in member fields comes out of /metrics escaped, and
    /// parses back to the same value.
    #[test]
    fn label_values_round_trip(
        members in prop::collection::btree_map("[a-z0-9\"\\\\\n-]{1,10}", ("\\PC{0,10}", "[\\PC\"\\\\\n]{0,12}", prop::option::of("[\\PC\"\\\\\n]{0,16}")), 1..6)
    ) {
        let store = Arc::new(Store::new());
        let key = ImageKey { region: "r".into(), project_id: "p".into(), image_id: "i".into() };
        let slots = store.set_images(&[(key.clone(), ImageMeta { name: "n\"a\\m\ne".into(), source: Source::Config })]);
        let api: Vec<Member> = members.iter().map(|(id, (kind, status, urn))| member(id.clone(), kind.clone(), status.clone(), urn.clone(), None)).collect();
        let set = MemberSet::from_api(api).evaluate(&[]);
        slots[0].store(slots[0].load().succeeded(set, BTreeMap::new(), 1.0));
        let metrics = Metrics::new(store, std::sync::Arc::new(SelfMetrics::new()));
        for format in [Format::Text, Format::OpenMetrics] {
            let samples = support::parse_exposition(&metrics.render(format));
            let name = support::find(&samples, "ims_image_info", &[]);
            prop_assert_eq!(name[0].label("image_name"), "n\"a\\m\ne");
            for (id, (kind, status, urn)) in &members {
                let info = support::find(&samples, "ims_image_member_info", &[("member_id", id)]);
                prop_assert_eq!(info.len(), 1);
                let kind = if kind.is_empty() { "unknown" } else { kind.as_str() };
                let status_want = if status.is_empty() { "unknown" } else { status.as_str() };
                prop_assert_eq!(info[0].label("member_type"), kind);
                prop_assert_eq!(info[0].label("status"), status_want);
                prop_assert_eq!(info[0].label("urn"), urn.as_deref().unwrap_or(""));
            }
        }
    }
}
