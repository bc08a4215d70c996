//! Serde types for IMS responses. Lenient where the API may vary: unknown fields are
//! ignored, optional fields may be absent or null, any `status`/`member_type` string is
//! kept, and a timestamp that does not parse leaves the member in place without it.
//! Strict where a lenient reading would lie: the list field (`members`, `images`) must
//! be there with the right JSON type — a 200 without it (`{}`, `[]`, a gateway error
//! body) is a malformed answer, not an empty list — and member strings are bounded
//! ([`check_member`]).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// `GET /v1/{project_id}/cloudimages/{image_id}/members`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct MemberList {
    pub members: Vec<Member>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_info: Option<PageInfo>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct PageInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_count: Option<u64>,
}

/// A member-list page as the poller decodes it: strings borrow from the response
/// body (a string with JSON escapes is the rare one that gets copied), and fields the
/// exporter does not use (`image_id`, `schema`) are skipped, so a page of 1,000 members
/// costs a handful of allocations instead of thousands.
#[derive(Debug, Default, PartialEq, Deserialize)]
pub struct MemberPage<'a> {
    #[serde(borrow)]
    pub members: Vec<MemberRef<'a>>,
    #[serde(default, borrow)]
    pub page_info: Option<PageInfoRef<'a>>,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
pub struct PageInfoRef<'a> {
    #[serde(default, borrow, deserialize_with = "borrowed_opt")]
    pub next_marker: Option<Cow<'a, str>>,
}

/// One listed member, borrowed; see [`MemberPage`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MemberRef<'a> {
    #[serde(borrow)]
    pub member_id: Cow<'a, str>,
    #[serde(default, borrow, deserialize_with = "borrowed_opt")]
    pub member_type: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "borrowed_opt")]
    pub status: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "borrowed_opt")]
    pub created_at: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "borrowed_opt")]
    pub updated_at: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "borrowed_opt")]
    pub urn: Option<Cow<'a, str>>,
}

/// serde borrows a `Cow<str>` field only when it is not wrapped: an `Option<Cow<str>>`
/// would always be copied. This borrows unless the string has escapes.
fn borrowed_opt<'de: 'a, 'a, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Cow<'a, str>>, D::Error> {
    #[derive(Deserialize)]
    struct Borrowed<'a>(#[serde(borrow)] Cow<'a, str>);
    Ok(Option::<Borrowed<'a>>::deserialize(d)?.map(|b| b.0))
}

impl<'a> From<&'a Member> for MemberRef<'a> {
    fn from(m: &'a Member) -> Self {
        let cow = |s: &'a Option<String>| s.as_deref().map(Cow::Borrowed);
        MemberRef {
            member_id: Cow::Borrowed(&m.member_id),
            member_type: cow(&m.member_type),
            status: cow(&m.status),
            created_at: cow(&m.created_at),
            updated_at: cow(&m.updated_at),
            urn: cow(&m.urn),
        }
    }
}

/// One image member (recipient), as listed or as returned by the detail call.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Member {
    pub member_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urn: Option<String>,
}

/// `GET /v2/cloudimages`: one page of the project's images (only what discovery uses).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ImageList {
    pub images: Vec<ImageSummary>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ImageSummary {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<String>,
    #[serde(
        default,
        rename = "__imagetype",
        skip_serializing_if = "Option::is_none"
    )]
    pub imagetype: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// Longest `member_id` or `urn` accepted (real ones are 32 hex characters, or an
/// organization URN of about 100).
pub const MAX_MEMBER_ID_BYTES: usize = 1024;
/// Longest `member_type` or `status` accepted (real ones are one short word).
pub const MAX_MEMBER_LABEL_BYTES: usize = 64;

/// Refuses a listed member whose strings no real member has: an empty ID, or an ID,
/// URN, type or status over the bounds above. Such a page is a malformed answer.
pub fn check_member(m: &MemberRef<'_>) -> Result<(), String> {
    let id = &m.member_id;
    if id.is_empty() {
        return Err("a member has an empty member_id".into());
    }
    let long = |field: &str, value: Option<&str>, max: usize| match value {
        Some(v) if v.len() > max => Err(format!(
            "member {}: {field} is {} bytes (at most {max})",
            super::error::excerpt(id, 64),
            v.len()
        )),
        _ => Ok(()),
    };
    long("member_id", Some(id), MAX_MEMBER_ID_BYTES)?;
    long("urn", m.urn.as_deref(), MAX_MEMBER_ID_BYTES)?;
    long(
        "member_type",
        m.member_type.as_deref(),
        MAX_MEMBER_LABEL_BYTES,
    )?;
    long("status", m.status.as_deref(), MAX_MEMBER_LABEL_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_without_its_list_is_malformed() {
        for body in [
            "{}",
            "[]",
            r#"{"error_code":"APIGW.0101","error_msg":"The API does not exist"}"#,
            r#"{"members":{}}"#,
            r#"{"members":null}"#,
        ] {
            assert!(
                serde_json::from_str::<MemberPage<'_>>(body).is_err(),
                "{body}"
            );
            assert!(serde_json::from_str::<MemberList>(body).is_err(), "{body}");
        }
        for body in ["{}", "[]", r#"{"images":"x"}"#] {
            assert!(serde_json::from_str::<ImageList>(body).is_err(), "{body}");
        }
        let empty: MemberPage<'_> = serde_json::from_str(r#"{"members":[]}"#).unwrap();
        assert!(
            empty.members.is_empty(),
            "an empty list is a real empty answer"
        );
    }

    #[test]
    fn member_strings_are_bounded() {
        let page = |m: &str| format!(r#"{{"members":[{m}]}}"#);
        let ok = page(r#"{"member_id":"p1","status":"accepted"}"#);
        let p: MemberPage<'_> = serde_json::from_str(&ok).unwrap();
        assert!(check_member(&p.members[0]).is_ok());
        let long_id = format!(
            r#"{{"member_id":"{}"}}"#,
            "a".repeat(MAX_MEMBER_ID_BYTES + 1)
        );
        let long_status = format!(r#"{{"member_id":"p","status":"{}"}}"#, "s".repeat(65));
        let long_urn = format!(r#"{{"member_id":"p","urn":"{}"}}"#, "u".repeat(1 << 20));
        for m in [
            long_id,
            long_status,
            long_urn,
            r#"{"member_id":""}"#.to_string(),
        ] {
            let text = page(&m);
            let p: MemberPage<'_> = serde_json::from_str(&text).unwrap();
            let e = check_member(&p.members[0]).unwrap_err();
            assert!(e.len() < 300, "{e}");
        }
    }

    #[test]
    fn seed_example_without_page_info_decodes() {
        let body = r#"{
            "members": [{
                "status": "accepted",
                "created_at": "2023-08-23T04:07:52Z",
                "updated_at": "2023-08-23T04:07:52Z",
                "image_id": "370befec-a369-475e-a224-44a45927a8fe",
                "member_id": "ou-5x1bvygwrplokk622i9gbn3f5ftfb2l9",
                "schema": "/v2/schemas/member",
                "member_type": "organization",
                "urn": "organizations::3a2d95404f964a6aba78819bf8ddc1e3:ou:o-wvntq58r3poyv180t5df1mdna4uwy9se/ou-5x1bvygwrplokk622i9gbn3f5ftfb2l9",
                "some_new_field": {"x": 1}
            }],
            "schema": "/v2/schemas/members"
        }"#;
        let list: MemberList = serde_json::from_str(body).unwrap();
        assert!(list.page_info.is_none());
        assert_eq!(list.members[0].member_type.as_deref(), Some("organization"));
    }

    #[test]
    fn borrowed_page_matches_owned_decoding() {
        let body = br#"{"members":[
            {"member_id":"p1","member_type":"project","status":"accepted","created_at":"2023-08-23T04:07:52Z","updated_at":null,"image_id":"x","schema":"/v2/schemas/member"},
            {"member_id":"p\u0032","status":"we\"ird","urn":null,"extra":[1,{"a":2}]}
        ],"page_info":{"next_marker":"p2","current_count":2},"schema":"/v2/schemas/members"}"#;
        let owned: MemberList = serde_json::from_slice(body).unwrap();
        let page: MemberPage<'_> = serde_json::from_slice(body).unwrap();
        let from_owned: Vec<MemberRef<'_>> = owned.members.iter().map(MemberRef::from).collect();
        assert_eq!(page.members, from_owned);
        assert_eq!(page.members[1].member_id, "p2", "escapes are decoded");
        assert!(matches!(page.members[0].member_id, Cow::Borrowed(_)));
        assert!(
            matches!(page.members[0].created_at, Some(Cow::Borrowed(_))),
            "optional strings are borrowed too"
        );
        assert_eq!(
            page.page_info.and_then(|p| p.next_marker).as_deref(),
            Some("p2")
        );
    }

    #[test]
    fn nulls_and_missing_optionals_are_fine() {
        let list: MemberList = serde_json::from_str(
            r#"{"members":[{"member_id":"p1","status":"weird","urn":null,"created_at":null}],"page_info":{"next_marker":null}}"#,
        )
        .unwrap();
        assert_eq!(list.members[0].status.as_deref(), Some("weird"));
        assert_eq!(list.page_info.unwrap().next_marker, None);
    }
}
