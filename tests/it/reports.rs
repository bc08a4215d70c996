//! One-shot reports (`--once --once.format=json|csv|markdown`): the current shares,
//! unexpected first, with poll failures, and the images shared with us, untrusted
//! first; a member ID a spreadsheet would mangle (comma, quote, newline, non-ASCII, a
//! leading `=`) survives each format.

use std::process::Command;
use std::time::Duration;

use crate::support::fleet::Fleet;
use crate::support::*;
use ims_exporter::fake_ims::{Canned, Fault};
use serde_json::Value;

const IMG: &str = "d164b5df-1bc3-4c3f-893e-3e471fd16e64";
const BROKEN: &str = "2a5b7c9d-0000-4000-8000-000000000002";
const ALLOWED: &str = "edc89b490d7d4392898e19b2deb34797";
/// A member ID no real one looks like, but nothing in the API forbids.
const HOSTILE: &str = "=cmd|\"x, y\"\nzürich";

async fn fleet() -> Fleet {
    let fleet = Fleet::new()
        .await
        .image(IMG, "name: golden")
        .image(BROKEN, "name: broken")
        .config(&format!(
            "allowed_members: [{ALLOWED}]\nretry:\n  max_attempts: 1"
        ));
    let m = |id: &str, status: &str| {
        serde_json::json!({"member_id": id, "member_type": "project", "status": status,
            "created_at": "2025-01-01T00:00:00Z", "updated_at": "2025-01-02T00:00:00Z"})
    };
    let page = serde_json::json!({"members": [m(ALLOWED, "accepted"), m(HOSTILE, "pending")]});
    fleet
        .fake
        .state
        .set_fault(IMG, Some(Fault::Script(vec![Canned::ok(page.to_string())])));
    fleet.fake.state.set_fault(BROKEN, Some(Fault::Status(503)));
    fleet
}

async fn report(fleet: &Fleet, format: &str) -> (i32, String) {
    let out = fleet.run_once(&["--once.format", format]).await;
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).expect("UTF-8 report"),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn json_report_lists_shares_unexpected_first_and_failures() {
    let fleet = fleet().await;
    let (code, text) = report(&fleet, "json").await;
    assert_eq!(code, 1, "an image failed: the exit code says so\n{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["version"], 1);
    let shares = v["shares"].as_array().unwrap();
    assert_eq!(shares.len(), 2);
    assert_eq!(shares[0]["member_id"], HOSTILE);
    assert_eq!(shares[0]["unexpected"], true);
    assert_eq!(shares[1]["member_id"], ALLOWED);
    let broken = v["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["image_id"] == BROKEN)
        .unwrap();
    assert_eq!(broken["last_poll_ok"], false);
    assert_eq!(broken["last_error_reason"], "http_5xx");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn csv_report_opens_in_a_spreadsheet() {
    if !require_tool("python3") {
        return;
    }
    let fleet = fleet().await;
    let (_, text) = report(&fleet, "csv").await;
    assert!(text.starts_with('\u{feff}'), "UTF-8 with a byte-order mark");
    // Python's csv module reads it as a spreadsheet would (RFC 4180).
    let mut cmd = Command::new("python3");
    cmd.args([
        "-c",
        "import csv,io,json,sys; t=sys.stdin.buffer.read().decode('utf-8-sig'); \
         print(json.dumps(list(csv.DictReader(io.StringIO(t, newline='')))))",
    ]);
    let out = run_tool(cmd, Some(text), Duration::from_secs(30)).await;
    assert!(out.status.success(), "{}", describe(&out));
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["unexpected"], "true");
    // The leading `=` is defused with a `'`; everything else arrives as it was.
    assert_eq!(rows[0]["member_id"], format!("'{HOSTILE}"));
    assert_eq!(rows[0]["image_name"], "golden");
    assert_eq!(rows[0]["shared_since"], "2025-01-01T00:00:00Z");
    assert_eq!(rows[1]["member_id"], ALLOWED);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn markdown_report_keeps_each_share_in_its_row() {
    let fleet = fleet().await;
    let (_, text) = report(&fleet, "markdown").await;
    let table: Vec<&str> = text.lines().filter(|l| l.starts_with('|')).collect();
    assert_eq!(
        table.len(),
        4,
        "header, rule and one row per share:\n{text}"
    );
    assert!(
        table[2].contains("**yes**") && table[2].contains("zürich"),
        "{text}"
    );
    assert!(
        table[2].contains("\\|") && table[2].contains("<br>"),
        "{text}"
    );
    assert!(
        text.contains("## Poll failures") && text.contains(BROKEN) && text.contains("http_5xx")
    );
    fleet.stop().await;
}

/// Image names that are Markdown links, an image, HTML and emphasis, or that carry a
/// lone CR, a NUL and other control characters; member IDs a spreadsheet would take
/// for a formula once it trims a space or reads a fullwidth sign (issue 19, item 10).
const LINK: &str = "[t](http://evil)";
const PICTURE: &str = "![x](http://evil/x.png)";
const BROKEN_ROW: &str = "a\rb\0c\u{7}d\u{1b}[31m\u{7f}e\u{85}f";
const MARKUP: &str = "<b>*em* _u_ `code` ~~s~~ #h \\| &amp; <http://evil>";
const FORMULAS: [&str; 12] = [
    "=1+1",
    "\u{ff1d}1+1",
    " =1+1",
    "  +1",
    "\n=1+1",
    "\r=1",
    "\t@SUM(A1)",
    "-2+3",
    "\u{ff0b}1",
    "\u{ff0d}1",
    "\u{ff20}SUM(A1)",
    "\u{3000}=1",
];

fn image_id(i: usize) -> String {
    format!("{i:08x}-0000-4000-8000-00000000000a")
}

async fn hostile_fleet() -> Fleet {
    let id = image_id;
    let fleet = Fleet::new()
        .await
        .target_keys("discover: {}")
        .config("retry:\n  max_attempts: 1");
    for (i, name) in [LINK, PICTURE, BROKEN_ROW, MARKUP].iter().enumerate() {
        fleet.fake.state.add_image(PROJECT, &id(i), name);
    }
    let fake = &fleet.fake;
    for (i, name) in [LINK, PICTURE, BROKEN_ROW, MARKUP].iter().enumerate() {
        share(fake, PROJECT, &id(i), &format!("m{i}"), "accepted");
        // The hostile name as a member ID too.
        share(fake, PROJECT, &id(i), name, "accepted");
    }
    for f in FORMULAS {
        share(fake, PROJECT, &id(0), f, "accepted");
    }
    let control_chars = "nul\0bell\u{7}del\u{7f}c1\u{9b}";
    share(fake, PROJECT, &id(0), control_chars, "accepted");
    fleet
}

/// The C0 and C1 control characters and DEL, but for what a quoted CSV cell or a line
/// end may hold.
fn controls(text: &str, allowed: &[char]) -> Vec<char> {
    text.chars()
        .filter(|c| (c.is_control()) && !allowed.contains(c))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn markdown_report_makes_no_link_image_html_or_row_of_hostile_values() {
    let fleet = hostile_fleet().await;
    let (code, text) = report(&fleet, "markdown").await;
    assert_eq!(code, 0, "{text}");
    assert_eq!(controls(&text, &['\n']), [] as [char; 0], "{text:?}");
    let table: Vec<&str> = text.lines().filter(|l| l.starts_with('|')).collect();
    let shares = 4 * 2 + FORMULAS.len() + 1;
    assert_eq!(
        table.len(),
        2 + shares,
        "header, rule and one row per share:\n{text}"
    );
    for row in &table[2..] {
        assert!(row.ends_with(" |"), "{row}");
        // Every cell separator is ours: 8 cells.
        let unescaped_pipes = row
            .char_indices()
            .filter(|(i, c)| *c == '|' && !escaped(row, *i))
            .count();
        assert_eq!(unescaped_pipes, 9, "{row}");
    }
    // No link, image, raw HTML, code span or emphasis can form: every metacharacter in
    // the rows and the failure list is escaped (but our own `**yes**` and `<br>`).
    let mut rows = table[2..].join("\n");
    for i in 0..4 {
        rows = rows.replace(&format!(" ({})", image_id(i)), "");
    }
    let rows = rows.replace("**yes**", "").replace("<br>", "");
    for (i, c) in rows.char_indices() {
        if "[]()!<>*_`~#\\".contains(c) && c != '\\' {
            assert!(escaped(&rows, i), "unescaped {c:?} at {i} in\n{rows}");
        }
        assert!(c != '<' && c != '>', "raw {c:?} in\n{rows}");
    }
    assert!(rows.contains("\\[t\\]\\(http://evil\\)"), "{rows}");
    assert!(rows.contains("\\!\\[x\\]\\(http://evil/x.png\\)"), "{rows}");
    assert!(rows.contains("&lt;b&gt;"), "{rows}");
    assert!(rows.contains("&amp;amp;"), "{rows}");
    // The lone CR is a line break inside its cell.
    assert!(text.contains("a<br>b"), "{text}");
    fleet.stop().await;
}

/// Whether the character at byte `i` follows an odd run of backslashes.
fn escaped(s: &str, i: usize) -> bool {
    s[..i].chars().rev().take_while(|c| *c == '\\').count() % 2 == 1
}

#[tokio::test(flavor = "multi_thread")]
async fn csv_report_defuses_formulas_and_control_characters() {
    if !require_tool("python3") {
        return;
    }
    let fleet = hostile_fleet().await;
    let (code, text) = report(&fleet, "csv").await;
    assert_eq!(code, 0, "{text}");
    // Inside quoted cells a tab, CR or LF is data; nothing else of C0, DEL or C1.
    assert_eq!(
        controls(&text, &['\n', '\r', '\t']),
        [] as [char; 0],
        "{text:?}"
    );
    let mut cmd = Command::new("python3");
    cmd.args([
        "-c",
        "import csv,io,json,sys; t=sys.stdin.buffer.read().decode('utf-8-sig'); \
         print(json.dumps(list(csv.DictReader(io.StringIO(t, newline='')))))",
    ]);
    let out = run_tool(cmd, Some(text.clone()), Duration::from_secs(30)).await;
    assert!(out.status.success(), "{}", describe(&out));
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 4 * 2 + FORMULAS.len() + 1, "{rows:?}");
    let members: Vec<&str> = rows
        .iter()
        .map(|r| r["member_id"].as_str().unwrap())
        .collect();
    // Each formula arrives whole, behind a `'` so no spreadsheet evaluates it.
    for f in FORMULAS {
        assert!(
            members.contains(&format!("'{f}").as_str()),
            "{f:?} in {members:?}"
        );
    }
    assert!(
        members.contains(&"nul\u{2400}bell\u{2407}del\u{2421}c1\u{fffd}"),
        "{members:?}"
    );
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["image_name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"a\rb\u{2400}c\u{2407}d\u{241b}[31m\u{2421}e\u{fffd}f"),
        "{names:?}"
    );
    // Nothing else gets the prefix.
    for r in &rows {
        for (k, v) in r.as_object().unwrap() {
            let v = v.as_str().unwrap();
            if let Some(guarded) = v.strip_prefix('\'') {
                assert_eq!(k, "member_id", "{r}");
                assert!(FORMULAS.contains(&guarded), "{v:?}");
            }
        }
    }
    fleet.stop().await;
}

const TRUSTED_OWNER: &str = "5e1f0c2d3b4a59687766554433221100";
const UNTRUSTED_OWNER: &str = "=9f8e|owner";
const OFFERED: &str = "ae2d8a57-1e03-4c2f-8c9e-b7d1a5f0e4b2";
const TRUSTED_OFFER: &str = "2b7e1516-28ae-4d2a-abf7-158809cf4f3c";

/// [`fleet`] listing the images shared with the test project, trusting
/// [`TRUSTED_OWNER`]: one of its images accepted, and one pending from an owner no
/// entry matches (whose name is Markdown and whose owner a spreadsheet would evaluate).
async fn incoming_fleet() -> Fleet {
    let fleet = fleet()
        .await
        .config(&format!("incoming:\n  trusted_owners: [{TRUSTED_OWNER}]"));
    let state = &fleet.fake.state;
    state.offer_image(
        PROJECT,
        TRUSTED_OFFER,
        "platform-base",
        TRUSTED_OWNER,
        "accepted",
    );
    state.offer_image(
        PROJECT,
        OFFERED,
        "[x](http://evil)",
        UNTRUSTED_OWNER,
        "pending",
    );
    fleet
}

#[tokio::test(flavor = "multi_thread")]
async fn reports_list_the_images_shared_with_us_untrusted_first() {
    let fleet = incoming_fleet().await;
    let (_, text) = report(&fleet, "json").await;
    let v: Value = serde_json::from_str(&text).unwrap();
    let incoming = v["incoming"].as_array().expect("an incoming array");
    let ids: Vec<&str> = incoming
        .iter()
        .map(|r| r["image_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [OFFERED, TRUSTED_OFFER], "untrusted first: {text}");
    assert_eq!(incoming[0]["owner"], UNTRUSTED_OWNER);
    assert_eq!(incoming[0]["member_status"], "pending");
    assert_eq!(incoming[0]["trusted"], false);
    assert_eq!(incoming[0]["region"], REGION);
    assert_eq!(incoming[0]["project_id"], PROJECT);
    assert!(incoming[0]["first_seen"].as_str().unwrap().ends_with('Z'));
    assert_eq!(incoming[1]["trusted"], true);
    // The shares are as before.
    assert_eq!(v["shares"].as_array().unwrap().len(), 2);

    let (_, text) = report(&fleet, "markdown").await;
    let section = &text[text.find("## Shared with us").expect("the section")..];
    let rows: Vec<&str> = section.lines().filter(|l| l.starts_with('|')).collect();
    assert_eq!(rows.len(), 4, "header, rule and one row per image:\n{text}");
    assert!(
        rows[2].contains("**no**")
            && rows[2].contains("\\[x\\]\\(http://evil\\)")
            && rows[2].contains("=9f8e\\|owner")
            && rows[2].contains("pending"),
        "{text}"
    );
    assert!(rows[3].contains(TRUSTED_OWNER) && rows[3].starts_with("| yes |"));
    assert!(
        section.contains("**1 from an owner no trusted entry matches**"),
        "{text}"
    );
    fleet.stop().await;
}

/// CSV is one table: the share columns first, as before, then `direction`, `owner` and
/// `first_seen` on every row; the images shared with us are rows after the shares.
#[tokio::test(flavor = "multi_thread")]
async fn csv_report_appends_the_images_shared_with_us_as_incoming_rows() {
    if !require_tool("python3") {
        return;
    }
    let fleet = incoming_fleet().await;
    let (_, text) = report(&fleet, "csv").await;
    let mut cmd = Command::new("python3");
    cmd.args([
        "-c",
        "import csv,io,json,sys; t=sys.stdin.buffer.read().decode('utf-8-sig'); \
         print(json.dumps(list(csv.reader(io.StringIO(t, newline='')))))",
    ]);
    let out = run_tool(cmd, Some(text), Duration::from_secs(30)).await;
    assert!(out.status.success(), "{}", describe(&out));
    let table: Vec<Vec<String>> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        table[0],
        [
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
            "direction",
            "owner",
            "first_seen"
        ]
    );
    assert_eq!(table.len(), 1 + 2 + 2, "{table:?}");
    assert!(table[1..3]
        .iter()
        .all(|r| r[13] == "outgoing" && r[14].is_empty()));
    let offered = &table[3];
    assert_eq!(
        offered[..8],
        [
            "true",
            REGION,
            PROJECT,
            OFFERED,
            "[x](http://evil)",
            "",
            "",
            "pending"
        ]
    );
    // The owner starts like a formula: defused as every other cell is.
    let owner = format!("'{UNTRUSTED_OWNER}");
    assert_eq!(offered[13..15], ["incoming", owner.as_str()]);
    assert!(offered[15].ends_with('Z'), "{offered:?}");
    assert_eq!(table[4][0], "false");
    assert_eq!(table[4][14], TRUSTED_OWNER);
    fleet.stop().await;
}

/// Without `incoming:` the reports hold no image shared with us: an empty `incoming`
/// array, no Markdown section, and every CSV row `outgoing`.
#[tokio::test(flavor = "multi_thread")]
async fn reports_without_incoming_list_none() {
    let fleet = fleet().await;
    let (_, text) = report(&fleet, "json").await;
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["incoming"], serde_json::json!([]));
    let (_, text) = report(&fleet, "markdown").await;
    assert!(!text.contains("Shared with us"), "{text}");
    let (_, text) = report(&fleet, "csv").await;
    assert!(
        text.contains(",\"direction\",\"owner\",\"first_seen\"\r\n"),
        "{text}"
    );
    // Both shares (one with a line feed in a quoted cell) end outgoing.
    assert_eq!(
        text.matches(",\"outgoing\",\"\",\"\"\r\n").count(),
        2,
        "{text}"
    );
    assert!(!text.contains("incoming"), "{text}");
    fleet.stop().await;
}

/// A listing that fails makes `--once` exit 1, as a failed poll does: the report lacks
/// what it should hold.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_listing_fails_once() {
    let fleet = Fleet::new()
        .await
        .image(IMG, "name: golden")
        .config("retry:\n  max_attempts: 1\nincoming: {}");
    share(&fleet.fake, PROJECT, IMG, ALLOWED, "accepted");
    let (code, _) = report(&fleet, "json").await;
    assert_eq!(code, 0);
    fleet
        .fake
        .state
        .set_shared_fault(PROJECT, Some(Fault::Status(503)));
    let (code, text) = report(&fleet, "json").await;
    assert_eq!(code, 1, "{text}");
    fleet.stop().await;
}
