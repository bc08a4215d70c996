//! The share browser (`/shares`): the rows of [`super::shares`] as one small HTML page,
//! readable on a laptop and a phone, with no external assets and no JavaScript.
//! Everything that comes from the API is escaped here, once, by [`escape`].

use std::fmt::Write;

use super::shares::{self, ShareFilter, SharePage};
use crate::state::{Snapshot, MEMBER_TYPES, STATUSES};

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a query value.
fn query_value(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The query string of `filter` at `page` (a link one can paste into a ticket).
fn link(filter: &ShareFilter, page: usize, per_page: usize) -> String {
    let mut q: Vec<String> = Vec::new();
    let mut push = |k: &str, v: Option<&str>| {
        if let Some(v) = v {
            q.push(format!("{k}={}", query_value(v)));
        }
    };
    push("image", filter.image.as_deref());
    push("type", filter.member_type.as_deref());
    push("status", filter.status.as_deref());
    if filter.unexpected_only {
        q.push("unexpected=true".into());
    }
    if page > 1 {
        q.push(format!("page={page}"));
    }
    if per_page != shares::DEFAULT_PER_PAGE {
        q.push(format!("per_page={per_page}"));
    }
    if q.is_empty() {
        "/shares".into()
    } else {
        format!("/shares?{}", q.join("&amp;"))
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1rem;color:#222}\
table{border-collapse:collapse;width:100%;font-size:.9rem}\
th,td{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}\
td{overflow-wrap:anywhere}tr.unexpected{background:#fde2e1}tr.unexpected td:first-child{font-weight:bold;color:#a40000}\
.bad{color:#a40000}.ok{color:#1b6e1b}form,nav{margin:.5rem 0}nav a{margin-right:1rem}\
@media(max-width:700px){.wide{display:none}}";

/// The whole page.
pub fn shares_page(snap: &Snapshot, filter: &ShareFilter, page: usize, per_page: usize) -> String {
    let p: SharePage = shares::shares(snap, filter, page, per_page);
    let mut o = String::with_capacity(16 * 1024 + p.shares.len() * 400);
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Image shares — IMS Exporter</title><style>{STYLE}</style></head><body>\n\
         <h1>Image shares</h1>\n<p><a href=\"/\">IMS Exporter</a> · {} share(s) match; \
         unexpected shares first. <a href=\"{}\">Unexpected only</a> · <a href=\"/shares\">All</a> · \
         <a href=\"/api/v1/shares\">JSON</a></p>\n",
        p.total,
        link(
            &ShareFilter {
                unexpected_only: true,
                ..filter.clone()
            },
            1,
            per_page
        ),
    );
    filter_form(&mut o, filter);
    o.push_str(
        "<table id=\"shares\"><thead><tr><th>Unexpected</th><th>Image</th><th class=\"wide\">Region / project</th>\
         <th>Member</th><th>Type</th><th>Status</th><th class=\"wide\">URN</th><th>Shared since</th>\
         <th class=\"wide\">Last change</th></tr></thead><tbody>\n",
    );
    for s in &p.shares {
        let _ = writeln!(
            o,
            "<tr class=\"{}\"><td>{}</td><td>{}<br><small>{}</small></td><td class=\"wide\">{} / {}</td>\
             <td class=\"member\">{}</td><td>{}</td><td>{}</td><td class=\"wide\">{}</td><td>{}</td>\
             <td class=\"wide\">{}</td></tr>",
            if s.unexpected { "unexpected" } else { "expected" },
            if s.unexpected { "yes" } else { "no" },
            escape(&s.image_name),
            escape(&s.image_id),
            escape(&s.region),
            escape(&s.project_id),
            escape(&s.member_id),
            escape(&s.member_type),
            escape(&s.status),
            escape(s.urn.as_deref().unwrap_or("")),
            escape(s.shared_since.as_deref().unwrap_or("")),
            escape(s.updated_at.as_deref().unwrap_or("")),
        );
    }
    o.push_str("</tbody></table>\n");
    pages(&mut o, filter, &p);
    images(&mut o, snap);
    o.push_str("</body></html>\n");
    o
}

/// A GET form over the same filters (works without JavaScript).
fn filter_form(o: &mut String, filter: &ShareFilter) {
    let select =
        |o: &mut String, name: &str, label: &str, values: &[&str], current: Option<&str>| {
            let _ = write!(
                o,
                "<label>{label} <select name=\"{name}\"><option value=\"\">any</option>"
            );
            for v in values {
                let selected = if current == Some(*v) { " selected" } else { "" };
                let _ = write!(o, "<option{selected}>{v}</option>");
            }
            o.push_str("</select></label> ");
        };
    o.push_str("<form method=\"get\" action=\"/shares\">");
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
fn pages(o: &mut String, filter: &ShareFilter, p: &SharePage) {
    let last = p.total.div_ceil(p.per_page).max(1);
    o.push_str("<nav>");
    if p.page > 1 {
        let _ = write!(
            o,
            "<a rel=\"prev\" href=\"{}\">Previous</a>",
            link(filter, p.page - 1, p.per_page)
        );
    }
    let _ = write!(o, "Page {} of {last}", p.page);
    if p.page < last {
        let _ = write!(
            o,
            " <a rel=\"next\" href=\"{}\">Next</a>",
            link(filter, p.page + 1, p.per_page)
        );
    }
    o.push_str("</nav>\n");
}

/// Each image's poll health and watched members that are missing.
fn images(o: &mut String, snap: &Snapshot) {
    o.push_str(
        "<h2>Images</h2>\n<table id=\"images\"><thead><tr><th>Image</th><th>Last poll</th>\
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
    o.push_str("</tbody></table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
    }

    #[test]
    fn links_keep_the_filter() {
        let f = ShareFilter {
            image: Some("a b&c".into()),
            unexpected_only: true,
            ..ShareFilter::default()
        };
        assert_eq!(
            link(&f, 2, 100),
            "/shares?image=a+b%26c&amp;unexpected=true&amp;page=2"
        );
        assert_eq!(link(&ShareFilter::default(), 1, 100), "/shares");
    }
}
