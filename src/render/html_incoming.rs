//! The share browser's "Shared with us" section: the images other tenants share with
//! our projects ([`super::offers`]' rows), untrusted owners first and highlighted as
//! unexpected shares are, with a GET form over the owner and our member status. Image
//! names and owners are whatever another tenant chose: every one goes through
//! [`escape`].

use std::fmt::Write;

use super::markup::{escape, hidden, query_value, select, when};
use super::offers::{self, IncomingFilter, IncomingRow};
use crate::pages;
use crate::state::{Snapshot, STATUSES};

/// The page's query parameters for this section: the owner (exact) and our member
/// status (`status` on the page filters the shares).
pub const OWNER: &str = "owner";
pub const STATUS: &str = "incoming_status";

/// `filter` as the page's query fields (name, value), for links and hidden fields.
pub(super) fn fields(filter: &IncomingFilter) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(owner) = &filter.owner {
        out.push((OWNER, owner.clone()));
    }
    if let Some(status) = &filter.status {
        out.push((STATUS, status.clone()));
    }
    out
}

/// The JSON API's link for `filter` (its parameters are `owner` and `status`).
fn api_link(filter: &IncomingFilter) -> String {
    let mut q: Vec<String> = Vec::new();
    if let Some(owner) = &filter.owner {
        q.push(format!("owner={}", query_value(owner)));
    }
    if let Some(status) = &filter.status {
        q.push(format!("status={}", query_value(status)));
    }
    if q.is_empty() {
        pages::API_INCOMING.to_string()
    } else {
        format!("{}?{}", pages::API_INCOMING, q.join("&amp;"))
    }
}

/// The section, when any target lists the images shared with it: at most `rows` of
/// the offers matching `filter`. `keep` are the page's other filters, carried along by
/// this section's form.
pub(super) fn section(
    o: &mut String,
    snap: &Snapshot,
    filter: &IncomingFilter,
    keep: &[(&str, String)],
    rows: usize,
) {
    if !offers::listed(snap) {
        return;
    }
    let p = offers::incoming(snap, filter, 1, rows);
    let untrusted = IncomingFilter {
        trusted: Some(false),
        ..filter.clone()
    };
    let untrusted = offers::incoming(snap, &untrusted, 1, 1).total;
    let _ = writeln!(
        o,
        "<h2>Shared with us</h2>\n<p>{} image(s) other tenants share with our projects match, \
         <span class=\"{}\">{untrusted} from an owner no trusted entry matches</span>; \
         untrusted owners first{}. <a href=\"{}\">JSON</a></p>",
        p.total,
        if untrusted > 0 { "bad" } else { "ok" },
        if p.total > p.incoming.len() {
            format!(
                " (the first {} shown: the JSON lists them all)",
                p.incoming.len()
            )
        } else {
            String::new()
        },
        api_link(filter),
    );
    form(o, filter, keep);
    if p.incoming.is_empty() {
        o.push_str("<p id=\"incoming\">No image shared with our projects matches.</p>\n");
        return;
    }
    let _ = writeln!(
        o,
        "<div class=\"scroll\"><table id=\"incoming\">\
         <thead><tr><th>Owner trusted</th><th>Image</th><th>Owner</th><th>Our status</th>\
         <th class=\"wide\">Shared with (region / project)</th><th>First seen</th></tr></thead><tbody>"
    );
    for r in &p.incoming {
        row(o, r);
    }
    o.push_str("</tbody></table></div>\n");
}

/// One offer as a table row, every value escaped.
fn row(o: &mut String, r: &IncomingRow) {
    let _ = writeln!(
        o,
        "<tr class=\"{}\"><td>{}</td><td>{}<br><small>{}</small></td><td class=\"member id\">{}</td>\
         <td class=\"word\">{}</td><td class=\"wide\">{}<br><small>{}</small></td><td class=\"word\">{}</td></tr>",
        if r.trusted { "expected" } else { "unexpected" },
        if r.trusted { "yes" } else { "no" },
        escape(&r.image_name),
        escape(&r.image_id),
        escape(&r.owner),
        r.member_status,
        escape(&r.region),
        escape(&r.project_id),
        when(r.first_seen.as_deref()),
    );
}

/// A GET form over the owner and the status (works without JavaScript).
fn form(o: &mut String, filter: &IncomingFilter, keep: &[(&str, String)]) {
    let _ = write!(
        o,
        "<form method=\"get\" action=\"{}#incoming\">",
        pages::SHARES
    );
    hidden(o, keep);
    let _ = write!(
        o,
        "<label>Owner <input name=\"{OWNER}\" value=\"{}\" placeholder=\"project ID\"></label> ",
        escape(filter.owner.as_deref().unwrap_or(""))
    );
    select(o, STATUS, "Our status", &STATUSES, filter.status.as_deref());
    o.push_str("<button>Filter</button></form>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_and_owners_are_text() {
        let mut o = String::new();
        row(
            &mut o,
            &IncomingRow {
                region: "r".into(),
                project_id: "p".into(),
                image_id: "i".into(),
                image_name: "<script>alert(1)</script>".into(),
                owner: "<img src=x onerror=alert(1)>".into(),
                member_status: "pending",
                trusted: false,
                first_seen: None,
            },
        );
        assert!(o.starts_with("<tr class=\"unexpected\">"), "{o}");
        assert!(!o.contains("<script") && !o.contains("<img"), "{o}");
        assert!(o.contains("&lt;img src=x onerror=alert(1)&gt;"), "{o}");
    }

    #[test]
    fn the_form_keeps_the_other_filters_and_shows_this_one() {
        let mut o = String::new();
        let filter = IncomingFilter {
            owner: Some("a\"b".into()),
            status: Some("pending".into()),
            trusted: None,
        };
        form(&mut o, &filter, &[("image", "<x>".into())]);
        assert!(
            o.contains("<input type=\"hidden\" name=\"image\" value=\"&lt;x&gt;\">"),
            "{o}"
        );
        assert!(o.contains("value=\"a&quot;b\""), "{o}");
        assert!(o.contains("<option selected>pending</option>"), "{o}");
        assert_eq!(
            api_link(&filter),
            "/api/v1/incoming?owner=a%22b&amp;status=pending"
        );
    }
}
