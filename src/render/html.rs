//! The server's HTML pages: the landing page (`/`, laid out as exporter-toolkit's) and
//! the share browser (`/shares`: the rows of [`super::shares`] as one small page,
//! readable on a laptop and a phone). No external assets, no JavaScript. Everything
//! that comes from the API is escaped here, once, by [`escape`].

use std::fmt::Write;

use super::html_incoming;
pub use super::markup::escape;
use super::markup::{hidden, query_value, select, when};
use super::offers::{self, IncomingFilter};
use super::shares::{self, ChangeList, ChangeRow, ShareFilter, SharePage, ShareRow};
use crate::pages;
use crate::state::{Snapshot, MEMBER_TYPES, STATUSES};

/// The share filter as the page's query fields (name, value).
fn share_fields(filter: &ShareFilter) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for (k, v) in [
        ("image", &filter.image),
        ("type", &filter.member_type),
        ("status", &filter.status),
    ] {
        if let Some(v) = v {
            out.push((k, v.clone()));
        }
    }
    if filter.unexpected_only {
        out.push(("unexpected", "true".to_string()));
    }
    out
}

/// The query string of `filter` and `incoming` at `page` (a link one can paste into a
/// ticket).
fn link(filter: &ShareFilter, incoming: &IncomingFilter, page: usize, per_page: usize) -> String {
    let mut q: Vec<String> = share_fields(filter)
        .into_iter()
        .chain(html_incoming::fields(incoming))
        .map(|(k, v)| format!("{k}={}", query_value(&v)))
        .collect();
    if page > 1 {
        q.push(format!("page={page}"));
    }
    if per_page != shares::DEFAULT_PER_PAGE {
        q.push(format!("per_page={per_page}"));
    }
    if q.is_empty() {
        pages::SHARES.into()
    } else {
        format!("{}?{}", pages::SHARES, q.join("&amp;"))
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1rem;color:#222}\
table{border-collapse:collapse;width:100%;font-size:.9rem}\
th,td{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}\
td{overflow-wrap:break-word}td.id,td small{overflow-wrap:anywhere}td.word{white-space:nowrap}\
td.id,small{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.8rem}\
tr.unexpected{background:#fde2e1}tr.unexpected td:first-child{font-weight:bold;color:#a40000}\
.bad{color:#a40000}.ok{color:#1b6e1b}form,nav{margin:.5rem 0}nav a{margin-right:1rem}\
.scroll{overflow-x:auto}@media(max-width:700px){.wide{display:none}body{margin:.5rem}th,td{padding:.25rem .3rem}}@media(min-width:701px){td.member{min-width:20em}}";

/// Exporter-toolkit's landing page style: the Prometheus-orange header.
const LANDING_STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0}\
header{background-color:#e6522c;color:#fff;font-size:1rem;padding:1rem}main{padding:1rem}\
.bad{color:#a40000;font-weight:bold}";

/// The landing page: name, description, version, what this exporter holds now, and
/// links to every page, as exporter-toolkit's `LandingConfig` lays them out.
pub fn landing_page(snap: &Snapshot, telemetry_path: &str, version: &str) -> String {
    let images = snap.images.len();
    let (shares, unexpected) = snap
        .images
        .iter()
        .filter_map(|s| s.members.as_deref())
        .fold((0, 0), |(n, u), m| {
            (n + m.members.len(), u + m.unexpected_count())
        });
    let failing = snap
        .images
        .iter()
        .filter(|s| s.last_poll_ok == Some(false))
        .count();
    let links = std::iter::once((telemetry_path, "Metrics", "the Prometheus exposition")).chain(
        pages::LINKED
            .iter()
            .map(|p| (p.path, p.title, p.description)),
    );
    let mut o = String::with_capacity(2048);
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"UTF-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1.0\">\
         <title>IMS Exporter</title><style>{LANDING_STYLE}</style></head><body>\n\
         <header><h1>IMS Exporter</h1></header>\n<main>\n\
         <h2>Who Huawei Cloud images are shared with, as Prometheus metrics</h2>\n\
         <div>Version: {}</div>\n<p id=\"summary\">{images} image(s) monitored; {shares} share(s), ",
        escape(version)
    );
    if unexpected > 0 {
        let _ = write!(
            o,
            "<a class=\"bad\" href=\"{}?unexpected=true\">{unexpected} unexpected</a>",
            pages::SHARES
        );
    } else {
        o.push_str("0 unexpected");
    }
    if failing > 0 {
        let _ = write!(
            o,
            "; <span class=\"bad\">{failing} image(s) failing to poll</span>"
        );
    }
    o.push_str(".</p>\n<div><ul>\n");
    for (href, text, description) in links {
        let _ = writeln!(
            o,
            "<li><a href=\"{}\">{text}</a>: {description}</li>",
            escape(href)
        );
    }
    o.push_str("</ul></div>\n</main>\n</body></html>\n");
    o
}

/// The whole page: the shares matching `filter`, the images shared with us matching
/// `incoming`, the recent changes and the images.
pub fn shares_page(
    snap: &Snapshot,
    changes: &ChangeList,
    filter: &ShareFilter,
    incoming: &IncomingFilter,
    page: usize,
    per_page: usize,
) -> String {
    let p: SharePage = shares::shares(snap, filter, page, per_page);
    let mut o = String::with_capacity(16 * 1024 + p.shares.len() * 400);
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Image shares — IMS Exporter</title><style>{STYLE}</style></head><body>\n\
         <h1>Image shares</h1>\n<p><a href=\"{landing}\">IMS Exporter</a> · {} share(s) match; \
         unexpected shares first. <a href=\"{}\">Unexpected only</a> · <a href=\"{shares}\">All</a> · \
         <a href=\"{api_shares}\">JSON</a></p>\n<nav><a href=\"#shares\">Shares</a>{}\
         <a href=\"#changes\">Recent changes</a><a href=\"#images\">Images</a></nav>\n",
        p.total,
        link(
            &ShareFilter {
                unexpected_only: true,
                ..filter.clone()
            },
            incoming,
            1,
            per_page
        ),
        if offers::listed(snap) {
            "<a href=\"#incoming\">Shared with us</a>"
        } else {
            ""
        },
        landing = pages::LANDING,
        shares = pages::SHARES,
        api_shares = pages::API_SHARES,
    );
    filter_form(&mut o, filter, incoming);
    o.push_str(
        "<div class=\"scroll\"><table id=\"shares\"><thead><tr><th>Unexpected</th><th>Image</th><th class=\"wide\">Region / project</th>\
         <th>Member</th><th>Type</th><th>Status</th><th class=\"wide\">URN</th><th>Shared since</th>\
         <th class=\"wide\">Last change</th></tr></thead><tbody>\n",
    );
    for s in &p.shares {
        share_row(&mut o, s);
    }
    o.push_str("</tbody></table></div>\n");
    pages(&mut o, filter, incoming, &p);
    html_incoming::section(&mut o, snap, incoming, &share_fields(filter), per_page);
    recent_changes(&mut o, changes);
    images(&mut o, snap);
    o.push_str("</body></html>\n");
    o
}

/// One share as a table row, every value escaped.
fn share_row(o: &mut String, s: &ShareRow) {
    let _ = writeln!(
        o,
        "<tr class=\"{}\"><td>{}</td><td>{}<br><small>{}</small></td><td class=\"wide\">{}<br><small>{}</small></td>\
         <td class=\"member id\">{}</td><td class=\"word\">{}</td><td class=\"word\">{}</td><td class=\"wide id\">{}</td>\
         <td class=\"word\">{}</td><td class=\"wide word\">{}</td></tr>",
        if s.unexpected { "unexpected" } else { "expected" },
        if s.unexpected { "yes" } else { "no" },
        escape(&s.of.image_name),
        escape(&s.of.image_id),
        escape(&s.of.region),
        escape(&s.of.project_id),
        escape(&s.of.member_id),
        escape(&s.of.member_type),
        escape(&s.status),
        escape(s.urn.as_deref().unwrap_or("")),
        when(s.shared_since.as_deref()),
        when(s.updated_at.as_deref()),
    );
}

/// A GET form over the same filters (works without JavaScript); the filter of the
/// images shared with us goes along.
fn filter_form(o: &mut String, filter: &ShareFilter, incoming: &IncomingFilter) {
    let _ = write!(o, "<form method=\"get\" action=\"{}\">", pages::SHARES);
    hidden(o, &html_incoming::fields(incoming));
    let _ = write!(
        o,
        "<label>Image <input name=\"image\" value=\"{}\" placeholder=\"ID or name\"></label> ",
        escape(filter.image.as_deref().unwrap_or(""))
    );
    select(
        o,
        "type",
        "Type",
        &MEMBER_TYPES,
        filter.member_type.as_deref(),
    );
    select(o, "status", "Status", &STATUSES, filter.status.as_deref());
    let checked = if filter.unexpected_only {
        " checked"
    } else {
        ""
    };
    let _ = writeln!(
        o,
        "<label><input type=\"checkbox\" name=\"unexpected\" value=\"true\"{checked}> unexpected only</label> \
         <button>Filter</button></form>"
    );
}

/// Previous / next page links.
fn pages(o: &mut String, filter: &ShareFilter, incoming: &IncomingFilter, p: &SharePage) {
    let last = p.total.div_ceil(p.per_page).max(1);
    o.push_str("<nav>");
    if p.page > 1 {
        let _ = write!(
            o,
            "<a rel=\"prev\" href=\"{}\">Previous</a>",
            link(filter, incoming, p.page - 1, p.per_page)
        );
    }
    let _ = write!(o, "Page {} of {last}", p.page);
    if p.page < last {
        let _ = write!(
            o,
            " <a rel=\"next\" href=\"{}\">Next</a>",
            link(filter, incoming, p.page + 1, p.per_page)
        );
    }
    o.push_str("</nav>\n");
}

/// The most recent member changes, images that stopped being monitored and changes
/// to the images shared with us, newest first.
fn recent_changes(o: &mut String, changes: &ChangeList) {
    let _ = writeln!(
        o,
        "<h2>Recent changes</h2>\n<p>The {} most recent member changes seen by the audit, images \
         no longer monitored and changes to the images shared with us, newest first. \
         <a href=\"{}\">JSON</a></p>",
        changes.changes.len(),
        pages::API_CHANGES
    );
    if changes.changes.is_empty() {
        o.push_str("<p id=\"changes\">No change seen yet: a change shows after the second good poll of an image.</p>\n");
        return;
    }
    o.push_str(
        "<div class=\"scroll\"><table id=\"changes\"><thead><tr><th>Time</th><th>Change</th><th>Image</th><th>Member / owner</th>\
         <th>Type</th><th>Status</th><th>By</th></tr></thead><tbody>\n",
    );
    for c in &changes.changes {
        change_row(o, c);
    }
    o.push_str("</tbody></table></div>\n");
}

/// One change as a table row, every value escaped.
fn change_row(o: &mut String, c: &ChangeRow) {
    let status = match &c.old_status {
        Some(old) => format!("{} → {}", escape(old), escape(&c.status)),
        None => escape(&c.status),
    };
    // An image no longer monitored names no member: what it had instead. An image
    // shared with us has no member of ours: who shares it.
    let member = match (c.members, c.unexpected_members, &c.owner) {
        (_, _, Some(owner)) => format!(
            "<td class=\"member id\">shared by {}{}</td>",
            escape(owner),
            if c.unexpected { " (untrusted)" } else { "" }
        ),
        (Some(n), Some(u), None) => format!("<td>{n} member(s), {u} unexpected</td>"),
        (Some(n), None, None) => format!("<td>{n} member(s), unexpected unknown</td>"),
        (None, _, None) => {
            format!("<td class=\"member id\">{}</td>", escape(&c.of.member_id))
        }
    };
    let change = match c.direction {
        "incoming" => format!(
            "{}<br><small>shared with us</small>",
            c.change.replace('_', " ")
        ),
        _ => c.change.replace('_', " "),
    };
    // Who made it, when a trace said so: actor, address and the trace to look up.
    let by = match &c.trace_id {
        Some(trace) => format!(
            "{}<br><small>{}</small><br><small class=\"id\">trace {}</small>",
            escape(c.actor.as_deref().unwrap_or("unknown")),
            escape(c.source_ip.as_deref().unwrap_or("")),
            escape(trace)
        ),
        None => String::new(),
    };
    let _ = writeln!(
        o,
        "<tr class=\"{}\"><td class=\"word\">{}</td><td class=\"word\">{change}</td><td>{}<br><small>{}</small></td>{member}<td class=\"word\">{}</td><td class=\"word\">{status}</td><td class=\"by\">{by}</td></tr>",
        if c.unexpected { "unexpected" } else { "expected" },
        when(c.time.as_deref()),
        escape(&c.of.image_name),
        escape(&c.of.image_id),
        escape(&c.of.member_type),
    );
}

/// Each image's poll health and watched members that are missing.
fn images(o: &mut String, snap: &Snapshot) {
    o.push_str(
        "<h2>Images</h2>\n<div class=\"scroll\"><table id=\"images\"><thead><tr><th>Image</th><th>Last poll</th>\
         <th>Last success</th><th>Members</th><th>Watched, missing</th></tr></thead><tbody>\n",
    );
    for i in shares::images(snap).images {
        let poll = match (i.last_poll_ok, i.last_error_reason) {
            (None, _) => "<span>not yet</span>".to_string(),
            (Some(true), _) => "<span class=\"ok\">ok</span>".to_string(),
            (Some(false), reason) => format!(
                "<span class=\"bad\">failed: {}</span>",
                escape(reason.unwrap_or("unknown"))
            ),
        };
        let _ = writeln!(
            o,
            "<tr><td><a href=\"{}\">{}</a><br><small>{}</small></td><td>{poll}</td><td>{}</td><td>{} ({} unexpected)</td><td class=\"bad\">{}</td></tr>",
            link(
                &ShareFilter {
                    image: Some(i.image_id.clone()),
                    ..ShareFilter::default()
                },
                &IncomingFilter::default(),
                1,
                shares::DEFAULT_PER_PAGE
            ),
            escape(&i.name),
            escape(&i.image_id),
            escape(i.last_success.as_deref().unwrap_or("never")),
            i.members.map(|n| n.to_string()).unwrap_or_else(|| "–".into()),
            i.unexpected_members,
            escape(&i.watched_missing.join(", ")),
        );
    }
    o.push_str("</tbody></table></div>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_boxes_show_the_filter_in_force() {
        let mut o = String::new();
        filter_form(
            &mut o,
            &ShareFilter {
                status: Some("Accepted".into()),
                member_type: Some("<b>odd</b>".into()),
                ..ShareFilter::default()
            },
            &IncomingFilter {
                owner: Some("<o>".into()),
                ..IncomingFilter::default()
            },
        );
        assert!(o.contains("<option selected>accepted</option>"), "{o}");
        assert!(
            o.contains("<option selected>&lt;b&gt;odd&lt;/b&gt;</option>"),
            "{o}"
        );
        assert_eq!(o.matches(" selected>").count(), 2, "{o}");
        assert!(
            o.contains("<input type=\"hidden\" name=\"owner\" value=\"&lt;o&gt;\">"),
            "the other form's filter goes along: {o}"
        );
    }

    #[test]
    fn links_keep_the_filter() {
        let f = ShareFilter {
            image: Some("a b&c".into()),
            unexpected_only: true,
            ..ShareFilter::default()
        };
        let none = IncomingFilter::default();
        assert_eq!(
            link(&f, &none, 2, 100),
            "/shares?image=a+b%26c&amp;unexpected=true&amp;page=2"
        );
        assert_eq!(link(&ShareFilter::default(), &none, 1, 100), "/shares");
        let owner = IncomingFilter {
            owner: Some("o&1".into()),
            status: Some("pending".into()),
            trusted: None,
        };
        assert_eq!(
            link(&ShareFilter::default(), &owner, 1, 100),
            "/shares?owner=o%261&amp;incoming_status=pending"
        );
    }
}
