//! One-shot reports (`--once --once.format=json|csv|markdown`): the current shares,
//! unexpected first, with poll failures; a member ID a spreadsheet would mangle
//! (comma, quote, newline, non-ASCII, a leading `=`) survives each format.

mod support;

use std::process::Command;
use std::time::Duration;

use ims_exporter::fake_ims::{Canned, Fault};
use serde_json::Value;
use support::fleet::Fleet;
use support::*;

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
