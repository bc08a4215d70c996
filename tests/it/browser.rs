//! The share browser in a real headless Chromium (Debian's `chromium`; the README's
//! test command installs it): the page loads, the unexpected share is highlighted and
//! first, a filter link narrows the table, and names and member IDs that carry HTML
//! or script are shown as text (in the shares and in the recent changes) while nothing
//! executes; and so are the names and owners of the images shared with us.

use std::process::Command;
use std::time::Duration;

use crate::support::fleet::Fleet;
use crate::support::*;
use ims_exporter::fake_ims::{Canned, Fault};

const IMG: &str = "d164b5df-1bc3-4c3f-893e-3e471fd16e64";
const ALLOWED: &str = "edc89b490d7d4392898e19b2deb34797";
const HOSTILE_NAME: &str = "<script>document.title='pwned'</script>";
const HOSTILE_MEMBER: &str = "<img src=x onerror=\"document.title='pwned'\">";
const STRANGER: &str = "0badc0de0badc0de0badc0de0badc0d";

/// The DOM of `url` after Chromium loaded it (scripts, if any could run, included).
async fn load(url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--virtual-time-budget=2000",
        "--dump-dom",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .arg(url);
    let out = run_tool(cmd, None, Duration::from_secs(90)).await;
    assert!(out.status.success(), "{}", describe(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `<tr>` lines of the shares table's body.
fn share_rows(dom: &str) -> Vec<&str> {
    let body = &dom[dom.find("<table id=\"shares\">").expect("the shares table")..];
    let body = &body[..body.find("</table>").unwrap()];
    body.match_indices("<tr class=")
        .map(|(i, _)| &body[i..i + body[i..].find("</tr>").unwrap()])
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_share_browser_shows_unexpected_shares_first_as_text() {
    if !require_tool("chromium") {
        return;
    }
    let fleet = Fleet::new()
        .await
        .image(IMG, &format!("name: \"{HOSTILE_NAME}\""))
        .config(&format!("allowed_members: [{ALLOWED}]"));
    let m = |id: &str, status: &str| serde_json::json!({"member_id": id, "member_type": "project", "status": status});
    // The hostile member arrives with the second poll, so it is in the recent changes too.
    let first = serde_json::json!({"members": [m(ALLOWED, "accepted"), m(STRANGER, "accepted")]});
    let page = serde_json::json!({"members": [
        m(ALLOWED, "accepted"), m(HOSTILE_MEMBER, "pending"), m(STRANGER, "accepted")
    ]});
    fleet.fake.state.set_fault(
        IMG,
        Some(Fault::Script(vec![
            Canned::ok(first.to_string()),
            Canned::ok(page.to_string()),
        ])),
    );
    let exporter = fleet.start(&[]).await;
    wait_for("the hostile member to be added", async || {
        let body = exporter.get("/api/v1/changes").await.text().await.ok()?;
        body.contains("onerror").then_some(())
    })
    .await;

    let r = exporter.get("/shares").await;
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );

    let dom = load(&exporter.url("/shares")).await;
    assert!(
        dom.contains("<title>Image shares — IMS Exporter</title>"),
        "nothing rewrote the title:\n{dom}"
    );
    let rows = share_rows(&dom);
    assert_eq!(rows.len(), 3, "{dom}");
    assert!(
        rows[0].starts_with("<tr class=\"unexpected\"")
            && rows[1].starts_with("<tr class=\"unexpected\"")
    );
    assert!(rows[2].starts_with("<tr class=\"expected\"") && rows[2].contains(ALLOWED));
    // Shown as text: escaped in the DOM, never elements.
    assert!(
        dom.contains("&lt;script&gt;document.title='pwned'&lt;/script&gt;"),
        "{dom}"
    );
    assert!(
        dom.contains("&lt;img src=x onerror=\"document.title='pwned'\"&gt;"),
        "{dom}"
    );
    assert!(!dom.contains("<img") && !dom.contains("<script"), "{dom}");
    let changes = &dom[dom
        .find("<table id=\"changes\">")
        .expect("the changes table")..];
    assert!(
        changes.contains("&lt;img src=x onerror=")
            && changes.contains("added")
            && changes.contains("&lt;script&gt;"),
        "the change is listed, as text: {changes}"
    );

    // The "Unexpected only" link narrows the table; it is a link one can paste.
    let href = dom
        .split("<a href=\"")
        .find_map(|s| {
            s.split_once("\">Unexpected only</a>")
                .map(|(h, _)| h.replace("&amp;", "&"))
        })
        .expect("the unexpected-only link");
    let narrowed = load(&exporter.url(&href)).await;
    let rows = share_rows(&narrowed);
    assert_eq!(rows.len(), 2, "{href}: {narrowed}");
    assert!(rows
        .iter()
        .all(|r| r.starts_with("<tr class=\"unexpected\"")));
    fleet.stop().await;
}

/// The `<tr>` lines of the "Shared with us" table's body.
fn incoming_rows(dom: &str) -> Vec<&str> {
    let body = &dom[dom
        .find("<table id=\"incoming\">")
        .expect("the incoming table")..];
    let body = &body[..body.find("</table>").unwrap()];
    body.match_indices("<tr class=")
        .map(|(i, _)| &body[i..i + body[i..].find("</tr>").unwrap()])
        .collect()
}

const TRUSTED_OWNER: &str = "5e1f0c2d3b4a59687766554433221100";
const OFFERED: &str = "ae2d8a57-1e03-4c2f-8c9e-b7d1a5f0e4b2";
const TRUSTED_OFFER: &str = "2b7e1516-28ae-4d2a-abf7-158809cf4f3c";

/// The "Shared with us" section: an image named with a script and an owner that is an
/// `<img onerror>` (another tenant chooses both) are shown as text, untrusted first and
/// highlighted; nothing runs and no element is injected; the owner and status filters
/// narrow the section and keep the shares' filter.
#[tokio::test(flavor = "multi_thread")]
async fn the_shared_with_us_section_shows_hostile_names_and_owners_as_text() {
    if !require_tool("chromium") {
        return;
    }
    let fleet = Fleet::new()
        .await
        .image(IMG, "name: golden")
        .config(&format!(
            "allowed_members: [{ALLOWED}]\nincoming:\n  interval: 1s\n  trusted_owners: [{TRUSTED_OWNER}]"
        ));
    share(&fleet.fake, PROJECT, IMG, ALLOWED, "accepted");
    fleet.fake.state.offer_image(
        PROJECT,
        TRUSTED_OFFER,
        "platform-base",
        TRUSTED_OWNER,
        "accepted",
    );
    fleet
        .fake
        .state
        .offer_image(PROJECT, OFFERED, HOSTILE_NAME, HOSTILE_MEMBER, "pending");
    let exporter = fleet.start(&[]).await;
    wait_for("both offers listed", async || {
        let body = exporter.get("/api/v1/incoming").await.text().await.ok()?;
        body.contains("\"total\":2").then_some(())
    })
    .await;

    let dom = load(&exporter.url("/shares")).await;
    assert!(
        dom.contains("<title>Image shares — IMS Exporter</title>"),
        "nothing rewrote the title:\n{dom}"
    );
    assert!(!dom.contains("<img") && !dom.contains("<script"), "{dom}");
    let rows = incoming_rows(&dom);
    assert_eq!(rows.len(), 2, "{dom}");
    // Untrusted first, highlighted as unexpected shares are, owner and status shown.
    assert!(
        rows[0].starts_with("<tr class=\"unexpected\""),
        "{}",
        rows[0]
    );
    assert!(
        rows[0].contains("&lt;script&gt;document.title='pwned'&lt;/script&gt;")
            && rows[0].contains("&lt;img src=x onerror=\"document.title='pwned'\"&gt;")
            && rows[0].contains("pending"),
        "shown as text: {}",
        rows[0]
    );
    assert!(
        rows[1].starts_with("<tr class=\"expected\"")
            && rows[1].contains(TRUSTED_OWNER)
            && rows[1].contains("accepted"),
        "{}",
        rows[1]
    );
    assert!(
        dom.contains("<a href=\"#incoming\">Shared with us</a>"),
        "{dom}"
    );

    // The filters are query parameters, and the section's form keeps the shares'.
    let narrowed =
        load(&exporter.url(&format!("/shares?owner={TRUSTED_OWNER}&unexpected=true"))).await;
    let rows = incoming_rows(&narrowed);
    assert_eq!(rows.len(), 1, "{narrowed}");
    assert!(rows[0].contains(TRUSTED_OWNER));
    assert!(
        narrowed.contains("<input type=\"hidden\" name=\"unexpected\" value=\"true\">"),
        "{narrowed}"
    );
    let pending = load(&exporter.url("/shares?incoming_status=Pending")).await;
    let rows = incoming_rows(&pending);
    assert_eq!(rows.len(), 1, "{pending}");
    assert!(rows[0].starts_with("<tr class=\"unexpected\""));
    assert!(
        pending.contains("<option selected=\"\">pending</option>"),
        "{pending}"
    );
    fleet.stop().await;
}
