//! An allocation budget for the poll path's hot part (issue 23's regression guard):
//! decoding a page of 1,000 members as the client does (borrowed strings, checked
//! once as UTF-8), turning each into a [`MemberRecord`], and sorting the records into a
//! [`MemberSet`]. Counted with the unit tests' counting allocator; not timed.

use crate::alloc_count::count;
use crate::ims::member_page;
use crate::ims::model::check_member;
use crate::state::{MemberRecord, MemberSet};

/// Members on the page: the API's largest page.
const PAGE: usize = 1000;
/// Allocations measured when the budgets were set (2026-12-05): 9 to decode the page,
/// 101 for the 1,000 records (the list, and two for each organization's URN: none for
/// a project or account member, whose ID is kept as its 16 bytes; 1,051 before), 2 for
/// the set.
/// The budgets leave room for noise, not for twice as many: a change past them needs
/// a reason (and new figures here).
const DECODE_BUDGET: usize = 12;
const RECORDS_BUDGET: usize = 130;
const SET_BUDGET: usize = 4;
/// Bytes of one record (136, then 64 before; a heap string for every ID at first): a
/// million members are a million of these.
const RECORD_BYTES: usize = 40;

/// A page as IMS lists it: project, domain and organization members, timestamps.
fn page() -> String {
    let members: Vec<String> = (0..PAGE)
        .map(|i| {
            let (kind, urn) = match i % 20 {
                0 => ("organization", format!(r#", "urn": "organizations::6c031a41eefc480bb60f20c003891fcd:ou:o-z5142zmm6p5cumsxralfljeb3qrwqamd/ou-{i:032}""#)),
                1..=3 => ("domain", String::new()),
                _ => ("project", String::new()),
            };
            format!(
                r#"{{"member_id": "{i:032x}", "member_type": "{kind}", "status": "accepted", "created_at": "2023-08-23T04:07:52Z", "updated_at": "2023-08-24T04:07:52Z", "image_id": "d164b5df-1bc3-4c3f-893e-3e471fd16e64", "schema": "/v2/schemas/member"{urn}}}"#
            )
        })
        .collect();
    format!(
        r#"{{"members": [{}], "schema": "/v2/schemas/members", "page_info": {{"next_marker": "abc", "current_count": {PAGE}}}}}"#,
        members.join(", ")
    )
}

#[test]
fn a_page_of_members_stays_within_its_allocation_budget() {
    let body = page();
    let (decoded, decode) = count(|| member_page::decode(body.as_bytes()));
    let page = decoded.expect("the page decodes");
    assert_eq!(page.members.len(), PAGE);
    assert!(page.members.iter().all(|m| check_member(m).is_ok()));
    let (records, converting) = count(|| {
        page.members
            .iter()
            .map(|m| MemberRecord::from_ref(m).0)
            .collect::<Vec<_>>()
    });
    let (set, building) = count(|| MemberSet::from_records(records, 0));
    assert_eq!(set.members.len(), PAGE);
    eprintln!("allocations: decode {decode}, records {converting}, set {building}");
    assert!(
        decode <= DECODE_BUDGET,
        "decoding a page: {decode} allocations"
    );
    assert!(
        converting <= RECORDS_BUDGET,
        "records: {converting} allocations for {PAGE} members"
    );
    assert!(building <= SET_BUDGET, "the set: {building} allocations");
}

#[test]
fn a_member_record_stays_within_its_size() {
    let size = std::mem::size_of::<MemberRecord>();
    assert!(size <= RECORD_BYTES, "a member record is {size} bytes");
}
