//! One-shot reports for audits and tickets (`--once.format`): the current shares,
//! unexpected first, and the images whose last poll failed, as JSON, CSV (for a
//! spreadsheet: RFC 4180 quoting, UTF-8 with a byte-order mark, formula-like cells
//! defused) or Markdown.

use serde::Serialize;

use super::shares::{self, ImageRow, ShareRow, SCHEMA_VERSION};
use crate::state::Snapshot;

/// Every share and every image of the snapshot.
#[derive(Debug, Serialize)]
pub struct Report {
    pub version: u32,
    pub shares: Vec<ShareRow>,
    pub images: Vec<ImageRow>,
}

impl Report {
    pub fn new(snap: &Snapshot) -> Report {
        Report {
            version: SCHEMA_VERSION,
            shares: shares::all_shares(snap),
            images: shares::images(snap).images,
        }
    }

    fn failed(&self) -> impl Iterator<Item = &ImageRow> {
        self.images.iter().filter(|i| i.last_poll_ok == Some(false))
    }

    pub fn json(&self) -> String {
        let mut s =
            serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
        s.push('\n');
        s
    }

    /// The shares, one row each, with their image's poll health.
    pub fn csv(&self) -> String {
        let mut out = String::from('\u{feff}');
        let header = [
            "unexpected",
            "region",
            "project_id",
            "image_id",
            "image_name",
            "member_id",
            "member_type",
            "status",
            "urn",
            "shared_since",
            "updated_at",
            "image_last_poll_ok",
            "image_last_error_reason",
        ];
        csv_row(&mut out, header.iter().map(|s| s.to_string()));
        for s in &self.shares {
            let image = self.images.iter().find(|i| {
                i.image_id == s.of.image_id
                    && i.project_id == s.of.project_id
                    && i.region == s.of.region
            });
            csv_row(
                &mut out,
                [
                    s.unexpected.to_string(),
                    s.of.region.clone(),
                    s.of.project_id.clone(),
                    s.of.image_id.clone(),
                    s.of.image_name.clone(),
                    s.of.member_id.clone(),
                    s.of.member_type.clone(),
                    s.status.clone(),
                    s.urn.clone().unwrap_or_default(),
                    s.shared_since.clone().unwrap_or_default(),
                    s.updated_at.clone().unwrap_or_default(),
                    image
                        .and_then(|i| i.last_poll_ok)
                        .map(|ok| ok.to_string())
                        .unwrap_or_default(),
                    image
                        .and_then(|i| i.last_error_reason)
                        .unwrap_or_default()
                        .to_string(),
                ]
                .into_iter(),
            );
        }
        out
    }

    pub fn markdown(&self) -> String {
        let mut out = String::from("# Image shares\n\n");
        let unexpected = self.shares.iter().filter(|s| s.unexpected).count();
        out.push_str(&format!(
            "{} share(s) of {} image(s); **{unexpected} unexpected**.\n\n",
            self.shares.len(),
            self.images.len()
        ));
        out.push_str("| unexpected | image | region / project | member | type | status | shared since | updated |\n|---|---|---|---|---|---|---|---|\n");
        for s in &self.shares {
            let cells = [
                if s.unexpected {
                    "**yes**".to_string()
                } else {
                    "no".to_string()
                },
                format!("{} ({})", s.of.image_name, s.of.image_id),
                format!("{} / {}", s.of.region, s.of.project_id),
                s.of.member_id.clone(),
                s.of.member_type.clone(),
                s.status.clone(),
                s.shared_since.clone().unwrap_or_default(),
                s.updated_at.clone().unwrap_or_default(),
            ];
            out.push('|');
            for c in cells {
                out.push(' ');
                out.push_str(&md_cell(&c));
                out.push_str(" |");
            }
            out.push('\n');
        }
        let failed: Vec<&ImageRow> = self.failed().collect();
        if !failed.is_empty() {
            out.push_str("\n## Poll failures\n\nTheir shares above are the last good list.\n\n");
            for i in failed {
                out.push_str(&format!(
                    "- {} ({}), {} / {}: {}, last success {}\n",
                    md_cell(&i.name),
                    i.image_id,
                    i.region,
                    i.project_id,
                    i.last_error_reason.unwrap_or("unknown"),
                    i.last_success.as_deref().unwrap_or("never")
                ));
            }
        }
        out
    }
}

/// One CSV record (RFC 4180): every field quoted, quotes doubled; a field a
/// spreadsheet would take for a formula gets a leading `'`.
fn csv_row(out: &mut String, fields: impl Iterator<Item = String>) {
    for (i, f) in fields.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        if f.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            out.push('\'');
        }
        out.push_str(&f.replace('"', "\"\""));
        out.push('"');
    }
    out.push_str("\r\n");
}

/// A Markdown table cell: `|` escaped, line breaks as `<br>`, HTML escaped.
fn md_cell(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('|', "\\|")
        .replace("\r\n", "<br>")
        .replace('\n', "<br>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_defuses() {
        let mut out = String::new();
        csv_row(
            &mut out,
            ["a,b\"c\nd".to_string(), "=1+1".to_string(), "ü".to_string()].into_iter(),
        );
        assert_eq!(out, "\"a,b\"\"c\nd\",\"'=1+1\",\"ü\"\r\n");
    }

    #[test]
    fn markdown_cells_stay_in_their_cell() {
        assert_eq!(md_cell("a|b\nc<script>"), "a\\|b<br>c&lt;script&gt;");
    }
}
