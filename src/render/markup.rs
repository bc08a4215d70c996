//! HTML text for the server's pages: escaping (everything that comes from the API
//! goes through [`escape`]), times in two short lines, query values. A leaf, so that
//! each page section can use it without reaching back into the page.

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

/// An RFC 3339 time as two short lines (date, then time), so the column stays narrow.
pub fn when(t: Option<&str>) -> String {
    match t.and_then(|t| t.split_once('T')) {
        Some((date, time)) => format!("{}<br><small>{}</small>", escape(date), escape(time)),
        None => escape(t.unwrap_or("")),
    }
}

/// Percent-encodes a query value.
pub fn query_value(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A drop-down `name` of `values` (and "any"), with `current` selected: a value the
/// API uses but does not document is in force too, so the box says so rather than
/// "any".
pub fn select(o: &mut String, name: &str, label: &str, values: &[&str], current: Option<&str>) {
    o.push_str(&format!(
        "<label>{label} <select name=\"{name}\"><option value=\"\">any</option>"
    ));
    for v in values {
        let selected = if current.is_some_and(|c| c.eq_ignore_ascii_case(v)) {
            " selected"
        } else {
            ""
        };
        o.push_str(&format!("<option{selected}>{v}</option>"));
    }
    if let Some(c) = current.filter(|c| !values.iter().any(|v| v.eq_ignore_ascii_case(c))) {
        o.push_str(&format!("<option selected>{}</option>", escape(c)));
    }
    o.push_str("</select></label> ");
}

/// Hidden form fields that carry `fields` (name, value) along, so that one form of a
/// page does not drop the filters another set.
pub fn hidden(o: &mut String, fields: &[(&str, String)]) {
    for (name, value) in fields {
        o.push_str(&format!(
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
            escape(value)
        ));
    }
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
}
