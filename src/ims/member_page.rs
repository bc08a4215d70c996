//! Decoding one page of an image's member list straight into the caller's records:
//! each member is checked and converted as it is parsed, borrowing from the body, so a
//! page never exists as a list of its own. What a page decodes to is exactly what
//! decoding it whole ([`MemberPage`]) and then checking and converting it would give:
//! nothing appended unless the whole page is well-formed, within the cap and every
//! member passes [`check_member`].

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::model::{check_member, MemberPage, MemberRef, PageInfoRef};
use super::transport::decode_json;

/// How a good page ends.
#[derive(Debug, PartialEq, Eq)]
pub enum PageEnd {
    /// The next page's marker, or `None` on the last page.
    Next(Option<String>),
    /// The page's members would pass `limit`; none were appended.
    OverCap,
}

/// Decodes `body`, appending its members to `out` through `convert`. `limit`: the
/// most members `out` may hold. `Err`: why the page is malformed (with the field's
/// path when the JSON itself is).
pub fn decode_member_page<R>(
    body: &[u8],
    out: &mut Vec<R>,
    limit: usize,
    convert: &mut dyn FnMut(&MemberRef<'_>) -> R,
) -> Result<PageEnd, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("body is not UTF-8: {e}"))?;
    let start = out.len();
    let mut page = Page {
        out,
        limit,
        convert,
        listed: 0,
        bad: None,
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let decoded = (&mut de)
        .deserialize_map(&mut page)
        .and_then(|marker| de.end().map(|()| marker));
    let (listed, bad) = (page.listed, page.bad);
    let end = match decoded {
        // The whole-page decoder says where the JSON is wrong.
        Err(plain) => Err(decode_json::<MemberPage<'_>>(body)
            .err()
            .unwrap_or_else(|| plain.to_string())),
        Ok(_) if start + listed > limit => Ok(PageEnd::OverCap),
        Ok(_) if bad.is_some() => Err(bad.unwrap_or_default()),
        Ok(marker) => Ok(PageEnd::Next(marker)),
    };
    if !matches!(end, Ok(PageEnd::Next(_))) {
        page.out.truncate(start);
    }
    end
}

/// The state of a page being decoded.
struct Page<'s, R> {
    out: &'s mut Vec<R>,
    limit: usize,
    convert: &'s mut dyn FnMut(&MemberRef<'_>) -> R,
    /// Members on the page so far.
    listed: usize,
    /// The first member that failed [`check_member`].
    bad: Option<String>,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum Field {
    Members,
    PageInfo,
    #[serde(other)]
    Other,
}

impl<'de, R> Visitor<'de> for &mut Page<'_, R> {
    /// The next marker.
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member-list page")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut members, mut marker) = (false, None);
        let mut page_info = false;
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Members if members => return Err(de::Error::duplicate_field("members")),
                Field::Members => {
                    members = true;
                    map.next_value_seed(Members(&mut *self))?;
                }
                Field::PageInfo if page_info => {
                    return Err(de::Error::duplicate_field("page_info"))
                }
                Field::PageInfo => {
                    page_info = true;
                    let info: Option<PageInfoRef<'de>> = map.next_value()?;
                    marker = info
                        .and_then(|p| p.next_marker)
                        .filter(|m| !m.is_empty())
                        .map(Cow::into_owned);
                }
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !members {
            return Err(de::Error::missing_field("members"));
        }
        Ok(marker)
    }
}

/// The `members` array of a [`Page`].
struct Members<'p, 's, R>(&'p mut Page<'s, R>);

impl<'de, R> DeserializeSeed<'de> for Members<'_, '_, R> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, R> Visitor<'de> for Members<'_, '_, R> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of members")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let page = self.0;
        while let Some(m) = seq.next_element::<MemberRef<'de>>()? {
            page.listed += 1;
            // Past the cap or after a bad member the page is refused whole: the rest
            // is only parsed (a malformed body still says where).
            if page.bad.is_some() || page.out.len() >= page.limit {
                continue;
            }
            match check_member(&m) {
                Ok(()) => page.out.push((page.convert)(&m)),
                Err(e) => page.bad = Some(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str) -> String {
        format!(r#"{{"member_id": "{id}", "status": "accepted", "schema": "/v2/schemas/member"}}"#)
    }

    fn page(ids: &[&str], tail: &str) -> String {
        let members: Vec<String> = ids.iter().map(|id| member(id)).collect();
        format!(r#"{{"members": [{}]{tail}}}"#, members.join(","))
    }

    fn decode(body: &str, out: &mut Vec<String>, limit: usize) -> Result<PageEnd, String> {
        decode_member_page(body.as_bytes(), out, limit, &mut |m| {
            m.member_id.to_string()
        })
    }

    #[test]
    fn a_page_decodes_as_the_whole_page_decoder_does() {
        let mut out = vec!["before".to_string()];
        let body = page(
            &["a", "b\\u0063"],
            r#", "page_info": {"next_marker": "m1"}"#,
        );
        assert_eq!(
            decode(&body, &mut out, 10),
            Ok(PageEnd::Next(Some("m1".into())))
        );
        assert_eq!(out, ["before", "a", "bc"]);
        let last = page(
            &["c"],
            r#", "page_info": {"next_marker": ""}, "x": [1, {}]"#,
        );
        assert_eq!(decode(&last, &mut out, 10), Ok(PageEnd::Next(None)));
        assert_eq!(out.len(), 4);
    }

    #[test]
    fn a_refused_page_appends_nothing() {
        let too_long = "x".repeat(2000);
        type Want = fn(&Result<PageEnd, String>) -> bool;
        let cases: [(String, Want); 7] = [
            // Over the cap, even with a bad member after it (the cap is checked first).
            (page(&["a", "b", ""], ""), |r| *r == Ok(PageEnd::OverCap)),
            (page(&["a", ""], ""), |r| {
                r.as_ref().is_err_and(|e| e.contains("empty member_id"))
            }),
            (page(&["a", &too_long], ""), |r| {
                r.as_ref().is_err_and(|e| e.contains("2000 bytes"))
            }),
            ("{}".into(), |r| {
                r.as_ref()
                    .is_err_and(|e| e.contains("missing field `members`"))
            }),
            ("[]".into(), |r| r.is_err()),
            (r#"{"members": [{"member_id": 5}]}"#.into(), |r| {
                r.as_ref()
                    .is_err_and(|e| e.contains("members[0].member_id"))
            }),
            (page(&["a"], r#", "members": []"#), |r| {
                r.as_ref().is_err_and(|e| e.contains("duplicate"))
            }),
        ];
        for (body, want) in cases {
            let mut out = vec!["before".to_string()];
            let got = decode(&body, &mut out, 3);
            assert!(want(&got), "{body}: {got:?}");
            assert_eq!(out, ["before"], "{body}");
        }
        let mut out = Vec::new();
        assert!(decode(&page(&["a"], "} trailing"), &mut out, 3).is_err());
        assert!(out.is_empty());
    }
}
