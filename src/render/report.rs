//! One-shot reports for audits and tickets (`--once.format`): the current shares,
//! unexpected first, the images whose last poll failed, and the images other tenants
//! share with us (untrusted owners first), as JSON, CSV (for a spreadsheet: RFC 4180
//! quoting, UTF-8 with a byte-order mark, formula-like cells defused) or Markdown (for
//! a ticket: every value escaped, so it is text).
//!
//! CSV is one table, so the images shared with us are rows after the shares: the
//! share columns keep their names and places, and three columns follow them on every
//! row: `direction` (`outgoing` for a share, `incoming` for an image shared with us),
//! `owner` and `first_seen` (empty on a share). On an incoming row `unexpected` says
//! that no trusted owner entry matches the owner, `status` is our member status, and
//! the member, URN, time and poll columns are empty.
//!
//! Whatever the API returns is data, not markup or a formula:
//!
//! - control characters are made visible, in both: C0 and DEL as their Unicode control
//!   pictures (NUL → `␀`, ESC → `␛`, DEL → `␡`), C1 as `�` (U+FFFD). CSV keeps tab, CR
//!   and LF, which a quoted cell holds as data; Markdown writes a line break (CR, LF or
//!   CRLF) as `<br>` and a tab as a space;
//! - CSV: a cell whose first character, or first after leading white space, is `=`,
//!   `+`, `-`, `@` or their fullwidth forms `＝ ＋ － ＠`, or that starts with a tab, CR
//!   or LF, gets a leading `'` (OWASP's CSV injection advice), so no spreadsheet
//!   evaluates it;
//! - Markdown: `` \ ` * _ [ ] ( ) ! # | ~ $ `` are backslash-escaped and `& < >` written as
//!   entities, so no link, image, HTML, code span, emphasis, heading or table cell can
//!   form from a value.

use serde::Serialize;

use super::offers::{self, IncomingRow};
use super::shares::{self, ChangeRow, ImageRow, ShareFilter, ShareRow, SCHEMA_VERSION};
use crate::state::{ChangeLog, Snapshot, MAX_CHANGES};

/// Every share and every image of the snapshot, and the changes held (with who made
/// them, when a trace said so).
#[derive(Debug, Serialize)]
pub struct Report {
    pub version: u32,
    pub shares: Vec<ShareRow>,
    pub images: Vec<ImageRow>,
    /// Newest first: those restored from `--storage.path` and those this run found.
    pub changes: Vec<ChangeRow>,
    /// The images other tenants share with our projects, untrusted owners first
    /// (`/api/v1/incoming`'s rows); empty without `incoming:`.
    pub incoming: Vec<IncomingRow>,
    /// Some target lists the images shared with it (Markdown says so even when none is).
    #[serde(skip)]
    listed: bool,
}

impl Report {
    pub fn new(snap: &Snapshot, changes: &ChangeLog) -> Report {
        Report {
            version: SCHEMA_VERSION,
            shares: shares::all_shares(snap),
            images: shares::images(snap).images,
            changes: shares::changes(changes, &ShareFilter::default(), MAX_CHANGES).changes,
            incoming: offers::all_incoming(snap),
            listed: offers::listed(snap),
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
        csv_row(&mut out, CSV_HEADER.iter().map(|s| s.to_string()));
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
                    "outgoing".to_string(),
                    String::new(),
                    String::new(),
                ]
                .into_iter(),
            );
        }
        self.csv_incoming(&mut out);
        out
    }

    /// The images shared with us as rows of the shares' table (see the module's doc).
    fn csv_incoming(&self, out: &mut String) {
        let none = String::new;
        for r in &self.incoming {
            let row = [
                (!r.trusted).to_string(),
                r.region.clone(),
                r.project_id.clone(),
                r.image_id.clone(),
                r.image_name.clone(),
                none(), // member_id
                none(), // member_type
                r.member_status.to_string(),
                none(), // urn
                none(), // shared_since
                none(), // updated_at
                none(), // image_last_poll_ok
                none(), // image_last_error_reason
                "incoming".to_string(),
                r.owner.clone(),
                r.first_seen.clone().unwrap_or_default(),
            ];
            csv_row(out, row.into_iter());
        }
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
            // Each cell is Markdown already: every value in it escaped.
            let cells = [
                if s.unexpected {
                    "**yes**".to_string()
                } else {
                    "no".to_string()
                },
                format!(
                    "{} ({})",
                    md_cell(&s.of.image_name),
                    md_cell(&s.of.image_id)
                ),
                format!("{} / {}", md_cell(&s.of.region), md_cell(&s.of.project_id)),
                md_cell(&s.of.member_id),
                md_cell(&s.of.member_type),
                md_cell(&s.status),
                md_cell(s.shared_since.as_deref().unwrap_or_default()),
                md_cell(s.updated_at.as_deref().unwrap_or_default()),
            ];
            md_row(&mut out, &cells);
        }
        let failed: Vec<&ImageRow> = self.failed().collect();
        if !failed.is_empty() {
            out.push_str("\n## Poll failures\n\nTheir shares above are the last good list.\n\n");
            for i in failed {
                out.push_str(&format!(
                    "- {} ({}), {} / {}: {}, last success {}\n",
                    md_cell(&i.name),
                    md_cell(&i.image_id),
                    md_cell(&i.region),
                    md_cell(&i.project_id),
                    // Ours: a reason label and an RFC 3339 time.
                    i.last_error_reason.unwrap_or("unknown"),
                    i.last_success.as_deref().unwrap_or("never")
                ));
            }
        }
        self.markdown_incoming(&mut out);
        self.markdown_changes(&mut out);
        out
    }

    /// The images shared with us, untrusted owners first.
    fn markdown_incoming(&self, out: &mut String) {
        if !self.listed {
            return;
        }
        let untrusted = self.incoming.iter().filter(|r| !r.trusted).count();
        out.push_str(&format!(
            "\n## Shared with us\n\n{} image(s) other tenants share with our projects; \
             **{untrusted} from an owner no trusted entry matches**.\n\n",
            self.incoming.len()
        ));
        if self.incoming.is_empty() {
            return;
        }
        out.push_str("| trusted | image | owner | our status | shared with (region / project) | first seen |\n|---|---|---|---|---|---|\n");
        for r in &self.incoming {
            let cells = [
                if r.trusted {
                    "yes".to_string()
                } else {
                    "**no**".to_string()
                },
                format!("{} ({})", md_cell(&r.image_name), md_cell(&r.image_id)),
                md_cell(&r.owner),
                r.member_status.to_string(),
                format!("{} / {}", md_cell(&r.region), md_cell(&r.project_id)),
                md_cell(r.first_seen.as_deref().unwrap_or_default()),
            ];
            md_row(out, &cells);
        }
    }

    /// The changes held, newest first, with who made each when a trace said so.
    fn markdown_changes(&self, out: &mut String) {
        if self.changes.is_empty() {
            return;
        }
        out.push_str("\n## Recent changes\n\n| time | change | image | member | status | by |\n|---|---|---|---|---|---|\n");
        for c in &self.changes {
            let by = match &c.trace_id {
                Some(trace) => format!(
                    "{} from {} (trace {})",
                    md_cell(c.actor.as_deref().unwrap_or("unknown")),
                    md_cell(c.source_ip.as_deref().unwrap_or("unknown")),
                    md_cell(trace)
                ),
                None => String::new(),
            };
            // An image shared with us has no member of ours: who shares it.
            let (change, member) = match &c.owner {
                Some(owner) => (
                    format!("{} (shared with us)", c.change.replace('_', " ")),
                    format!("shared by {}", md_cell(owner)),
                ),
                None => (c.change.replace('_', " "), md_cell(&c.of.member_id)),
            };
            let cells = [
                md_cell(c.time.as_deref().unwrap_or_default()),
                change,
                format!(
                    "{} ({})",
                    md_cell(&c.of.image_name),
                    md_cell(&c.of.image_id)
                ),
                member,
                md_cell(&c.status),
                by,
            ];
            md_row(out, &cells);
        }
    }
}

/// The CSV report's columns.
const CSV_HEADER: [&str; 16] = [
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
    // After the share columns, so that a reader of those finds them where
    // it always did.
    "direction",
    "owner",
    "first_seen",
];

/// One Markdown table row of cells that are Markdown already.
fn md_row(out: &mut String, cells: &[String]) {
    out.push('|');
    for cell in cells {
        out.push(' ');
        out.push_str(cell);
        out.push_str(" |");
    }
    out.push('\n');
}

/// A control character as a visible one: C0 and DEL as their Unicode control pictures
/// (U+2400..U+2421), C1 as U+FFFD; any other character as it is.
fn visible(c: char) -> char {
    match c {
        '\0'..='\x1f' => char::from_u32(0x2400 + u32::from(c)).unwrap_or('\u{fffd}'),
        '\x7f' => '\u{2421}',
        c if c.is_control() => '\u{fffd}',
        c => c,
    }
}

/// What a spreadsheet may take for the start of a formula (OWASP, CSV injection).
const FORMULA_START: [char; 8] = [
    '=', '+', '-', '@', '\u{ff1d}', '\u{ff0b}', '\u{ff0d}', '\u{ff20}',
];

/// One CSV cell's text: control characters visible (but tab, CR and LF, data in a
/// quoted cell), and a leading `'` when a spreadsheet could read a formula: the first
/// character, or the first after white space, starts one, or the cell starts with a
/// tab, CR or LF.
fn csv_cell(f: &str) -> String {
    let text: String = f
        .chars()
        .map(|c| match c {
            '\t' | '\r' | '\n' => c,
            c => visible(c),
        })
        .collect();
    let first = text.trim_start().chars().next();
    if text.starts_with(['\t', '\r', '\n']) || first.is_some_and(|c| FORMULA_START.contains(&c)) {
        format!("'{text}")
    } else {
        text
    }
}

/// One CSV record (RFC 4180): every field quoted, quotes doubled, each made a
/// [`csv_cell`].
fn csv_row(out: &mut String, fields: impl Iterator<Item = String>) {
    for (i, f) in fields.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        out.push_str(&csv_cell(&f).replace('"', "\"\""));
        out.push('"');
    }
    out.push_str("\r\n");
}

/// A value as Markdown text that stays in its table cell (or list item): every
/// metacharacter that can start a link, image, code span, emphasis, strikethrough,
/// heading, math or cell escaped with a backslash; `&`, `<` and `>` as entities (no
/// HTML, no autolink, no entity of the value's own); a line break (CRLF, CR or LF) as
/// `<br>`, a tab as a space, any other control character visible.
fn md_cell(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '(' | ')' | '!' | '#' | '|' | '~' | '$' => {
                out.push('\\');
                out.push(c);
            }
            '\r' => {
                chars.next_if_eq(&'\n');
                out.push_str("<br>");
            }
            '\n' => out.push_str("<br>"),
            '\t' => out.push(' '),
            c => out.push(visible(c)),
        }
    }
    out
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

    #[test]
    fn csv_defuses_every_formula_start() {
        for (cell, want) in [
            ("=1+1", "'=1+1"),
            ("+1", "'+1"),
            ("-1", "'-1"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\u{ff1d}1+1", "'\u{ff1d}1+1"),
            ("\u{ff0b}1", "'\u{ff0b}1"),
            ("\u{ff0d}1", "'\u{ff0d}1"),
            ("\u{ff20}SUM(A1)", "'\u{ff20}SUM(A1)"),
            (" =1+1", "' =1+1"),
            ("  \t+1", "'  \t+1"),
            ("\u{3000}=1", "'\u{3000}=1"),
            ("\n=1+1", "'\n=1+1"),
            ("\r=1", "'\r=1"),
            ("\tx", "'\tx"),
            ("\nx", "'\nx"),
            // Not a formula: as it is.
            ("a=1", "a=1"),
            (" a", " a"),
            ("", ""),
            ("ü-1", "ü-1"),
        ] {
            assert_eq!(csv_cell(cell), want, "{cell:?}");
        }
    }

    #[test]
    fn csv_makes_control_characters_visible() {
        assert_eq!(
            csv_cell("a\0b\x07c\x1bd\x7fe\u{85}f\u{9f}g"),
            "a\u{2400}b\u{2407}c\u{241b}d\u{2421}e\u{fffd}f\u{fffd}g"
        );
        // Data a quoted cell holds: kept.
        assert_eq!(csv_cell("a\tb\r\nc\rd"), "a\tb\r\nc\rd");
        // A NUL before a formula: the NUL shows and the cell starts with it.
        assert_eq!(csv_cell("\0=1"), "\u{2400}=1");
        let mut out = String::new();
        csv_row(&mut out, ["\0\"".to_string()].into_iter());
        assert_eq!(out, "\"\u{2400}\"\"\"\r\n");
    }

    #[test]
    fn markdown_makes_no_link_image_or_markup() {
        for (cell, want) in [
            ("[t](http://evil)", "\\[t\\]\\(http://evil\\)"),
            (
                "![x](http://evil/x.png)",
                "\\!\\[x\\]\\(http://evil/x.png\\)",
            ),
            ("[t][1]", "\\[t\\]\\[1\\]"),
            ("<http://evil>", "&lt;http://evil&gt;"),
            ("<img src=x>", "&lt;img src=x&gt;"),
            ("&lt;b&gt;", "&amp;lt;b&amp;gt;"),
            (
                "*em* _u_ **b** ~~s~~",
                "\\*em\\* \\_u\\_ \\*\\*b\\*\\* \\~\\~s\\~\\~",
            ),
            ("`code`", "\\`code\\`"),
            ("# h", "\\# h"),
            ("$x$", "\\$x\\$"),
            ("a\\|b", "a\\\\\\|b"),
            ("a\\", "a\\\\"),
        ] {
            assert_eq!(md_cell(cell), want, "{cell:?}");
        }
    }

    #[test]
    fn markdown_line_breaks_and_control_characters() {
        assert_eq!(md_cell("a\rb"), "a<br>b");
        assert_eq!(md_cell("a\r\nb\nc\n\rd"), "a<br>b<br>c<br><br>d");
        assert_eq!(md_cell("a\tb"), "a b");
        assert_eq!(
            md_cell("a\0b\x07c\x1b[31md\x7fe\u{85}f"),
            "a\u{2400}b\u{2407}c\u{241b}\\[31md\u{2421}e\u{fffd}f"
        );
        // Nothing but the line feeds of the report itself is a control character.
        let all: String = (0u32..0xa0).filter_map(char::from_u32).collect();
        assert!(!md_cell(&all).chars().any(char::is_control));
    }
}
