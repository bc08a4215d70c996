use super::*;

const CAP: MemberCap = MemberCap {
    limit: 100,
    setting: "max_members_per_image",
};

fn page(ids: &[&str], next: Option<&str>) -> Vec<u8> {
    let members: Vec<String> = ids
        .iter()
        .map(|id| format!(r#"{{"member_id":"{id}","status":"accepted"}}"#))
        .collect();
    let info = next.map_or("null".into(), |m| format!(r#"{{"next_marker":"{m}"}}"#));
    format!(
        r#"{{"members":[{}],"page_info":{info}}}"#,
        members.join(",")
    )
    .into_bytes()
}

/// What each page said, the members decoded (in order), and the listing's print.
type Read = (Vec<String>, Vec<String>, ListingPrint);

/// Reads `pages` in order as one listing against `known`.
fn list(pages: &[Vec<u8>], known: Option<&ListingPrint>) -> Read {
    list_holding(pages, known, MAX_HELD_BYTES)
}

/// [`list`], holding at most `hold_limit` bytes of unchanged pages.
fn list_holding(pages: &[Vec<u8>], known: Option<&ListingPrint>, hold_limit: usize) -> Read {
    let mut convert = |m: &MemberRef<'_>| m.member_id.to_string();
    let mut paging = Paging {
        known: known.filter(|k| k.fits(2, CAP.limit, 10)),
        cap: CAP,
        convert: &mut convert,
        members: Vec::new(),
        pages: Vec::new(),
        held: Vec::new(),
        hold_limit,
    };
    let said = pages
        .iter()
        .map(|body| {
            let said = match paging.read(body).unwrap() {
                Page::Same(next) => format!("same {next:?}"),
                Page::Decoded(next) => format!("decoded {next:?}"),
                Page::TooMany => "too many".into(),
            };
            let held: usize = paging.held.iter().map(Vec::len).sum();
            assert!(held <= hold_limit, "{held} bytes held");
            said
        })
        .collect();
    let print = ListingPrint {
        page_size: 2,
        members: paging.members.len(),
        pages: paging.pages,
    };
    (said, paging.members, print)
}

/// The same answer is known page by page and decodes nothing; a page that differs
/// decodes it and every page before it, so the members are whole.
#[test]
fn a_known_answer_is_not_decoded_and_a_changed_one_is_decoded_whole() {
    let first = page(&["a", "b"], Some("m1"));
    let last = page(&["c"], None);
    let (said, members, print) = list(&[first.clone(), last.clone()], None);
    assert_eq!(said, ["decoded Some(\"m1\")", "decoded None"]);
    assert_eq!(members, ["a", "b", "c"]);
    assert_eq!(print.members, 3);

    let (said, members, again) = list(&[first.clone(), last.clone()], Some(&print));
    assert_eq!(said, ["same Some(\"m1\")", "same None"]);
    assert!(members.is_empty(), "nothing decoded: {members:?}");
    assert_eq!(again.pages, print.pages);

    // The last page changed: the first, held undecoded, is decoded after all.
    let changed = page(&["c", "d"], None);
    let (said, members, print2) = list(&[first.clone(), changed.clone()], Some(&print));
    assert_eq!(said, ["same Some(\"m1\")", "decoded None"]);
    assert_eq!(members, ["a", "b", "c", "d"]);
    assert_eq!(print2.members, 4);
    assert_eq!(print2.pages[0], print.pages[0]);
    assert_ne!(print2.pages[1], print.pages[1]);

    // The first page changed (one byte): decoded from there on.
    let other = page(&["a", "e"], Some("m1"));
    let (said, members, _) = list(&[other, last.clone()], Some(&print));
    assert_eq!(said, ["decoded Some(\"m1\")", "decoded None"]);
    assert_eq!(members, ["a", "e", "c"]);

    // A listing that now ends early, or runs on, is another answer.
    let (said, members, _) = list(&[page(&["a", "b"], None)], Some(&print));
    assert_eq!(said, ["decoded None"]);
    assert_eq!(members, ["a", "b"]);
}

/// Past the bytes a listing may hold, unchanged pages are decoded as they come: the
/// same answer is still known, and a changed one still has every member once.
#[test]
fn past_the_hold_limit_unchanged_pages_are_decoded_as_they_come() {
    let pages = [
        page(&["a", "b"], Some("m1")),
        page(&["c", "d"], Some("m2")),
        page(&["e"], None),
    ];
    let (_, _, print) = list(&pages, None);
    let one_page = pages[0].len();
    let (said, _, _) = list_holding(&pages, Some(&print), one_page);
    assert_eq!(
        said,
        ["same Some(\"m1\")", "same Some(\"m2\")", "same None"]
    );

    let changed = [pages[0].clone(), pages[1].clone(), page(&["e", "f"], None)];
    let (said, members, _) = list_holding(&changed, Some(&print), one_page);
    assert_eq!(
        said,
        ["same Some(\"m1\")", "same Some(\"m2\")", "decoded None"]
    );
    assert_eq!(
        members,
        ["a", "b", "c", "d", "e", "f"],
        "each page once, in order"
    );
}

/// The known answer stands for its members only where the same answer would pass
/// this poll's paging and caps: a reload may have lowered them.
#[test]
fn a_known_answer_counts_only_within_this_polls_limits() {
    let (_, _, print) = list(&[page(&["a", "b"], Some("m1")), page(&["c"], None)], None);
    assert!(print.fits(2, 3, 2));
    assert!(
        !print.fits(3, 3, 2),
        "another page size asks for other pages"
    );
    assert!(!print.fits(2, 2, 2), "more members than the cap");
    assert!(!print.fits(2, 3, 1), "more pages than allowed");
}
