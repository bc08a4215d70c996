use proptest::prelude::*;

use super::*;
use crate::ims::model::{Member, MemberList, PageInfo};

fn serde_page(text: &str) -> Result<MemberPage<'_>, String> {
    decode_json(text.as_bytes())
}

/// A page as the fake IMS writes one (serde_json, compact), with `n` members.
fn fake_page(n: usize) -> String {
    let members = (0..n)
        .map(|i| Member {
            member_id: format!("{i:032x}"),
            member_type: Some("project".into()),
            status: Some(if i % 3 == 0 { "pending" } else { "accepted" }.into()),
            created_at: Some("2023-08-23T04:07:52Z".into()),
            updated_at: Some("2023-08-24T04:07:52.123Z".into()),
            image_id: Some("d164b5df-1bc3-4c3f-893e-3e471fd16e64".into()),
            schema: Some("/v2/schemas/member".into()),
            urn: (i % 5 == 0).then(|| format!("organizations::o-1:ou:ou-{i}")),
        })
        .collect();
    let list = MemberList {
        members,
        schema: Some("/v2/schemas/members".into()),
        page_info: Some(PageInfo {
            next_marker: Some("m-1".into()),
            current_count: Some(n as u64),
        }),
    };
    serde_json::to_string(&list).expect("encodes")
}

#[test]
fn pages_as_ims_writes_them_are_scanned_and_decode_as_serde_decodes_them() {
    for text in [
        fake_page(0),
        fake_page(3),
        fake_page(1000),
        // Pretty-printed, fields in another order, nulls, an unknown nested field.
        r#"{
          "page_info" : null,
          "members" : [ { "status" : null , "member_id" : "a" , "extra" : {"x": [1, -2.5e3, true, false, null, "y"]} } ]
        }"#
        .to_string(),
    ] {
        let scanned = scan(&text).expect("the scanner reads the page");
        assert_eq!(Ok(scanned), serde_page(&text));
    }
}

#[test]
fn what_the_scanner_leaves_to_serde_still_decodes_or_fails_as_before() {
    // An escape: decoded by serde, and copied.
    let text = r#"{"members": [{"member_id": "a\"b", "status": "accepted"}]}"#;
    assert!(scan(text).is_none());
    let page = decode(text.as_bytes()).expect("decodes");
    assert_eq!(page.members[0].member_id, "a\"b");
    // Malformed pages: serde's messages, with the field path.
    for (text, message) in [
        (r#"{}"#, "missing field `members`"),
        (r#"{"members": null}"#, "invalid type: null"),
        (
            r#"{"members": [{"status": "accepted"}]}"#,
            "missing field `member_id`",
        ),
        (
            r#"{"members": [{"member_id": "a", "member_id": "b"}]}"#,
            "duplicate field",
        ),
        (r#"{"members": []} x"#, "trailing characters"),
        (
            r#"{"members": [], "page_info": {"next_marker": 5}}"#,
            "page_info.next_marker",
        ),
    ] {
        assert!(scan(text).is_none(), "{text}");
        let error = decode(text.as_bytes()).expect_err(text);
        assert!(error.contains(message), "{text}: {error}");
        assert_eq!(Err(error), serde_page(text));
    }
    assert!(decode(b"{\"members\": [\xff]}").is_err());
}

fn ws() -> impl Strategy<Value = String> {
    prop_oneof![Just(""), Just(" "), Just("\n\t "), Just("\r")].prop_map(String::from)
}

/// Values the scanner must read as serde does, or leave to serde.
const ODD_VALUES: [&str; 25] = [
    r#""a\"b""#,
    r#""\u00e9""#,
    "\"tab\there\"",
    "\"é✓\"",
    "\"open",
    "0",
    "-12.5e+3",
    "01",
    "-01",
    "1.",
    "-",
    "1E5",
    "1e",
    ".5",
    "true",
    "false",
    "nul",
    "nullx",
    r#"{"a": [1, {"b": null}], "c": "d"}"#,
    "[]",
    "{}",
    "[1,]",
    r#"{"a" 1}"#,
    "[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]",
    "[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]",
];

/// A field's value: mostly a plain string, and each of [`ODD_VALUES`].
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z0-9:/ .-]{0,12}".prop_map(|s| format!("\"{s}\"")),
        1 => Just("null".to_string()),
        3 => prop::sample::select(&ODD_VALUES[..]).prop_map(String::from),
    ]
}

#[test]
fn each_odd_value_is_read_as_serde_reads_it_wherever_it_stands() {
    for v in ODD_VALUES {
        for text in [
            format!(r#"{{"members": [{{"member_id": "a", "image_id": {v}}}], "schema": {v}}}"#),
            format!(r#"{{"members": [{{"member_id": "a", "status": {v}}}]}}"#),
            format!(r#"{{"members": [{{"member_id": {v}}}]}}"#),
            format!(r#"{{"members": [], "page_info": {{"next_marker": {v}, "x": {v}}}}}"#),
            format!(r#"{{"members": {v}}}"#),
        ] {
            if let Some(scanned) = scan(&text) {
                assert_eq!(Ok(scanned), serde_page(&text), "{text}");
            }
        }
    }
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("member_id"),
        Just("member_type"),
        Just("status"),
        Just("created_at"),
        Just("updated_at"),
        Just("urn"),
        Just("image_id"),
        Just("schema"),
        Just(r"member\u005fid"),
    ]
    .prop_map(String::from)
}

fn object(fields: &[(String, String)], ws: &str) -> String {
    let fields: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{ws}\"{k}\"{ws}:{ws}{v}{ws}"))
        .collect();
    format!("{{{}}}", fields.join(","))
}

/// A member object: mostly with a plain 32-hex ID first, then any fields.
fn member() -> impl Strategy<Value = String> {
    (
        prop::bool::weighted(0.9),
        "[0-9a-f]{32}",
        prop::collection::vec((key(), value()), 0..6),
        ws(),
    )
        .prop_map(|(with_id, id, mut fields, ws)| {
            if with_id {
                fields.insert(0, ("member_id".into(), format!("\"{id}\"")));
            }
            object(&fields, &ws)
        })
}

fn page() -> impl Strategy<Value = String> {
    let members = prop_oneof![
        8 => (prop::collection::vec(member(), 0..4), ws())
            .prop_map(|(m, ws)| format!("[{ws}{}{ws}]", m.join(","))),
        1 => value(),
    ];
    let page_info = prop_oneof![
        value(),
        value().prop_map(|v| format!(r#"{{"next_marker": {v}, "current_count": 3}}"#)),
    ];
    let top = prop_oneof![
        6 => members.prop_map(|m| ("members".to_string(), m)),
        2 => page_info.prop_map(|p| ("page_info".to_string(), p)),
        1 => value().prop_map(|v| ("schema".to_string(), v)),
    ];
    (
        prop::collection::vec(top, 0..4),
        ws(),
        prop_oneof![8 => Just(""), 1 => Just(" x"), 1 => Just("}")],
        0usize..400,
        prop::bool::weighted(0.1),
    )
        .prop_map(|(fields, ws, tail, cut, truncate)| {
            let mut text = format!("{ws}{}{ws}{tail}", object(&fields, &ws));
            if truncate {
                let mut cut = cut.min(text.len());
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
            }
            text
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    /// Whatever the scanner returns, serde returns too; whatever serde refuses, the
    /// scanner leaves to serde.
    #[test]
    fn the_scanner_agrees_with_serde(text in page()) {
        if let Some(scanned) = scan(&text) {
            prop_assert_eq!(Ok(scanned), serde_page(&text), "{}", text);
        }
    }
}

/// What [`plain_len`] computes, a byte at a time.
fn plain_len_naive(rest: &[u8]) -> Option<usize> {
    let n = rest
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
    (rest[n] == b'"').then_some(n)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5000))]
    /// Sixteen and eight bytes at a time find the same end as one at a time, wherever
    /// the quote, escape or control byte falls, among bytes of every value.
    #[test]
    fn plain_len_is_the_first_special_byte(
        bytes in prop::collection::vec(
            prop_oneof![
                4 => any::<u8>(),
                1 => prop::sample::select(&[b'"', b'\\', 0x1f, 0x20, 0x7f, 0x80, 0xff, 0x21, 0x22, 0x5c][..]),
            ],
            0..80,
        )
    ) {
        prop_assert_eq!(plain_len(&bytes), plain_len_naive(&bytes));
    }
}
