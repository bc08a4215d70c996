//! The JSON API (docs/share-browser-and-api.md#json-api): every share with its image and status,
//! unexpected first, filtered and paged; every image with its poll health; the most
//! recent member changes; behind the web config's basic auth like `/metrics` (and so
//! are the share browser and the landing page).

use crate::support::fleet::Fleet;
use crate::support::*;
use serde_json::Value;

const IMG: &str = "d164b5df-1bc3-4c3f-893e-3e471fd16e64";
const ALLOWED: &str = "edc89b490d7d4392898e19b2deb34797";
const PENDING: &str = "0badc0de0badc0de0badc0de0badc0d";
const ORG: &str = "ou-qdjrky7i07higfa4f6reqv9etybmp4ng";
const URN: &str = "organizations::6c031a41eefc480bb60f20c003891fcd:ou:o-z5142zmm6p5cumsxralfljeb3qrwqamd/ou-qdjrky7i07higfa4f6reqv9etybmp4ng";
const WATCHED: &str = "aaaabbbbccccddddeeeeffff00001111";

async fn fleet() -> Fleet {
    let fleet = Fleet::new()
        .await
        .image(IMG, &format!("name: golden\nwatch_members: [{WATCHED}]"))
        .config(&format!("allowed_members: [{ALLOWED}]"));
    let share = |member: &str| Share::new(PROJECT, IMG, member).updated("2025-02-01T12:30:00Z");
    share(ALLOWED).put(&fleet.fake);
    share(PENDING).status("pending").put(&fleet.fake);
    share(ORG).kind("organization").urn(URN).put(&fleet.fake);
    fleet
}

async fn get(exporter: &Exporter, path: &str) -> (u16, Value) {
    let r = exporter.get(path).await;
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn ids(page: &Value) -> Vec<&str> {
    page["shares"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["member_id"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn shares_are_listed_unexpected_first_filtered_and_paged() {
    let fleet = fleet().await;
    let exporter = fleet.start(&[]).await;

    let (status, page) = get(&exporter, "/api/v1/shares").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["version"], 1);
    assert_eq!(page["total"], 3);
    assert_eq!(page["page"], 1);
    let rows = page["shares"].as_array().unwrap();
    assert!(
        rows[0]["unexpected"] == true
            && rows[1]["unexpected"] == true
            && rows[2]["unexpected"] == false,
        "unexpected first: {page}"
    );
    let org = rows.iter().find(|r| r["member_id"] == ORG).unwrap();
    for (field, want) in [
        ("region", REGION),
        ("project_id", PROJECT),
        ("image_id", IMG),
        ("image_name", "golden"),
        ("member_type", "organization"),
        ("status", "accepted"),
        ("urn", URN),
        ("shared_since", "2025-01-01T00:00:00Z"),
        ("updated_at", "2025-02-01T12:30:00Z"),
    ] {
        assert_eq!(org[field], want, "{field}: {org}");
    }
    let allowed = rows.iter().find(|r| r["member_id"] == ALLOWED).unwrap();
    assert_eq!(allowed["urn"], Value::Null);

    for (query, want) in [
        ("?unexpected=true", vec![ORG, PENDING]),
        ("?status=pending", vec![PENDING]),
        ("?type=organization", vec![ORG]),
        ("?image=golden&status=accepted", vec![ORG, ALLOWED]),
        (
            &format!("?image={IMG}&unexpected=true&status=accepted"),
            vec![ORG],
        ),
        ("?image=another", vec![]),
    ] {
        let (status, page) = get(&exporter, &format!("/api/v1/shares{query}")).await;
        assert_eq!(status, 200, "{query}: {page}");
        let mut got = ids(&page);
        got.sort();
        let mut want = want.clone();
        want.sort();
        assert_eq!(got, want, "{query}");
        assert_eq!(page["total"], want.len(), "{query}");
    }

    // Paging: the same order, a page at a time.
    let (_, all) = get(&exporter, "/api/v1/shares").await;
    let mut paged = Vec::new();
    for n in 1..=3 {
        let (_, page) = get(&exporter, &format!("/api/v1/shares?per_page=1&page={n}")).await;
        assert_eq!(page["total"], 3);
        assert_eq!(page["per_page"], 1);
        paged.extend(ids(&page).into_iter().map(str::to_string));
    }
    assert_eq!(paged, ids(&all));
    let (_, past) = get(&exporter, "/api/v1/shares?per_page=2&page=9").await;
    assert!(ids(&past).is_empty());

    // A misspelt filter is an error, not a wider answer.
    let (status, _) = get(&exporter, "/api/v1/shares?unexpeted=true").await;
    assert_eq!(status, 400);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn images_show_their_poll_health() {
    let fleet = fleet().await;
    let exporter = fleet.start(&[]).await;
    let (status, list) = get(&exporter, "/api/v1/images").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["version"], 1);
    let image = &list["images"][0];
    assert_eq!(image["image_id"], IMG);
    assert_eq!(image["name"], "golden");
    assert_eq!(image["source"], "config");
    assert_eq!(image["last_poll_ok"], true);
    assert_eq!(image["members"], 3);
    assert_eq!(image["unexpected_members"], 2);
    assert_eq!(image["watched_missing"], serde_json::json!([WATCHED]));
    assert!(image["last_success"].as_str().unwrap().ends_with('Z'));
    assert_eq!(image["last_error_reason"], Value::Null);

    // A failing poll shows its reason; the last good members stay.
    fleet
        .fake
        .state
        .set_fault(IMG, Some(ims_exporter::fake_ims::Fault::Status(500)));
    let image = wait_for("the failed poll", async || {
        let (_, list) = get(&exporter, "/api/v1/images").await;
        (list["images"][0]["last_poll_ok"] == false).then(|| list["images"][0].clone())
    })
    .await;
    assert_eq!(image["last_error_reason"], "http_5xx");
    assert_eq!(image["members"], 3);
    fleet.stop().await;
}

/// (change, member_id, old_status, status) of each listed change, in order.
fn changes(list: &Value) -> Vec<(String, String, String, String)> {
    let s = |v: &Value| v.as_str().unwrap_or("-").to_string();
    list["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                s(&c["change"]),
                s(&c["member_id"]),
                s(&c["old_status"]),
                s(&c["status"]),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn changes_are_listed_newest_first_with_what_changed() {
    let fleet = fleet().await;
    let exporter = fleet.start(&[]).await;
    let (status, list) = get(&exporter, "/api/v1/changes").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["version"], 1);
    assert_eq!(
        changes(&list),
        [],
        "the first poll is a baseline, not a change"
    );

    let fake = &fleet.fake;
    assert!(fake.state.remove_member(PROJECT, IMG, PENDING));
    Share::new(PROJECT, IMG, ORG)
        .kind("organization")
        .urn(URN)
        .status("rejected")
        .put(fake);
    let list = wait_for("two changes", async || {
        let (_, list) = get(&exporter, "/api/v1/changes").await;
        (changes(&list).len() == 2).then_some(list)
    })
    .await;
    let mut got = changes(&list);
    got.sort();
    let row = |c: &str, m: &str, old: &str, new: &str| {
        (
            c.to_string(),
            m.to_string(),
            old.to_string(),
            new.to_string(),
        )
    };
    assert_eq!(
        got,
        [
            row("removed", PENDING, "-", "pending"),
            row("status_changed", ORG, "accepted", "rejected"),
        ]
    );
    let first = &list["changes"][0];
    assert_eq!(first["image_id"], IMG);
    assert_eq!(first["image_name"], "golden");
    assert_eq!(first["unexpected"], true);
    assert!(first["time"].as_str().unwrap().ends_with('Z'), "{first}");

    // A later change is listed first.
    share(fake, PROJECT, IMG, WATCHED, "pending");
    let list = wait_for("the third change", async || {
        let (_, list) = get(&exporter, "/api/v1/changes").await;
        (changes(&list).len() == 3).then_some(list)
    })
    .await;
    assert_eq!(changes(&list)[0], row("added", WATCHED, "-", "pending"));
    let (_, one) = get(&exporter, "/api/v1/changes?limit=1").await;
    assert_eq!(changes(&one), changes(&list)[..1]);
    let (_, none) = get(&exporter, "/api/v1/changes?image=another").await;
    assert_eq!(changes(&none), []);
    let (_, by_name) = get(&exporter, "/api/v1/changes?image=golden").await;
    assert_eq!(changes(&by_name).len(), 3);
    let (status, _) = get(&exporter, "/api/v1/changes?limt=1").await;
    assert_eq!(status, 400);

    // The share browser shows them too.
    let page = exporter.get("/shares").await.text().await.unwrap();
    let table = &page[page
        .find("<table id=\"changes\">")
        .expect("the changes table")..];
    let table = &table[..table.find("</table>").unwrap()];
    for id in [WATCHED, PENDING, ORG] {
        assert!(table.contains(id), "{id} in\n{table}");
    }
    assert!(table.contains("accepted → rejected"), "{table}");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_needs_the_web_configs_basic_auth() {
    let fleet = fleet().await;
    let hash = bcrypt::hash("right-password", 4).unwrap();
    let web = fleet.dir.path().join("web.yml");
    std::fs::write(&web, format!("basic_auth_users:\n  alice: '{hash}'\n")).unwrap();
    let exporter = fleet
        .start_unready(&["--web.config.file", web.to_str().unwrap()])
        .await;
    let client = reqwest::Client::new();
    for (path, content_type) in [
        ("/api/v1/shares", "application/json"),
        ("/api/v1/images", "application/json"),
        ("/api/v1/changes", "application/json"),
        ("/shares", "text/html; charset=utf-8"),
        ("/", "text/html; charset=utf-8"),
    ] {
        let r = client.get(exporter.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let r = client
            .get(exporter.url(path))
            .basic_auth("alice", Some("right-password"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], content_type, "{path}");
    }
    fleet.stop().await;
}

/// A 400 names the parameter and what is wrong with it, and echoes nothing the client
/// sent (issue 19, item 13): not a value, not an unknown parameter's name.
#[tokio::test(flavor = "multi_thread")]
async fn errors_name_the_parameter_and_echo_no_input() {
    let fleet = fleet().await;
    let exporter = fleet.start(&[]).await;
    const SVG: &str = "<svg onload=alert(1)>";
    for (path, parameter) in [
        (format!("/shares?image={SVG}&page=x"), "page"),
        (format!("/shares?page={SVG}"), "page"),
        (format!("/shares?per_page=-1&image={SVG}"), "per_page"),
        (format!("/shares?unexpected={SVG}"), "unexpected"),
        (format!("/shares?{SVG}=1"), "unknown"),
        (format!("/shares?image=a&image={SVG}"), "image"),
        (format!("/api/v1/shares?image={SVG}&page=x"), "page"),
        (format!("/api/v1/shares?{SVG}"), "unknown"),
        (format!("/api/v1/shares?type={SVG}&{SVG}=1"), "unknown"),
        (format!("/api/v1/changes?limit={SVG}"), "limit"),
        (format!("/api/v1/changes?{SVG}=1"), "unknown"),
        (format!("/api/v1/images?{SVG}=1"), "unknown"),
    ] {
        let r = exporter.get(&path).await;
        assert_eq!(r.status(), 400, "{path}");
        let body = r.text().await.unwrap();
        assert!(body.contains(parameter), "{path}: {body}");
        for echo in ["<svg", "svg", "alert", "%3C"] {
            assert!(!body.contains(echo), "{path} echoes {echo}: {body}");
        }
    }
    fleet.stop().await;
}

/// `limit=0` asks for no change at all, which is a mistake (a client meaning "no
/// limit" must not be answered with an empty list): a 400 (issue 19, item 14).
#[tokio::test(flavor = "multi_thread")]
async fn a_changes_limit_of_zero_is_refused() {
    let fleet = fleet().await;
    let exporter = fleet.start(&[]).await;
    let (status, body) = get(&exporter, "/api/v1/changes?limit=0").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.as_str().unwrap().contains("limit"), "{body}");
    for ok in [
        "/api/v1/changes?limit=1",
        "/api/v1/changes?limit=1000",
        "/api/v1/changes?limit=5000",
    ] {
        let (status, body) = get(&exporter, ok).await;
        assert_eq!(status, 200, "{ok}: {body}");
    }
    fleet.stop().await;
}

/// `/api/v1/images` takes no parameter: any is a 400, as on the other endpoints.
#[tokio::test(flavor = "multi_thread")]
async fn images_refuse_unknown_parameters() {
    let fleet = fleet().await;
    let exporter = fleet.start(&[]).await;
    for path in ["/api/v1/images?image=golden", "/api/v1/images?x"] {
        let (status, body) = get(&exporter, path).await;
        assert_eq!(status, 400, "{path}: {body}");
    }
    let (status, _) = get(&exporter, "/api/v1/images").await;
    assert_eq!(status, 200);
    let (status, _) = get(&exporter, "/api/v1/images?").await;
    assert_eq!(status, 200);
    fleet.stop().await;
}

/// The status and type filters match whatever the case (issue 19, item 14): the API
/// and the page list the same shares as for the documented lower-case values, and the
/// page's boxes show the filter in force.
#[tokio::test(flavor = "multi_thread")]
async fn status_and_type_filters_ignore_case() {
    let fleet = fleet().await;
    let exporter = fleet.start(&[]).await;
    for (query, want) in [
        ("status=Accepted", vec![ALLOWED, ORG]),
        ("status=PENDING", vec![PENDING]),
        ("type=Organization", vec![ORG]),
        ("type=PROJECT&status=accepted", vec![ALLOWED]),
    ] {
        let (status, page) = get(&exporter, &format!("/api/v1/shares?{query}")).await;
        assert_eq!(status, 200, "{query}: {page}");
        let mut got = ids(&page);
        got.sort();
        let mut want = want.clone();
        want.sort();
        assert_eq!(got, want, "{query}");
        let html = exporter
            .get(&format!("/shares?{query}"))
            .await
            .text()
            .await
            .unwrap();
        assert!(
            html.contains(&format!("{} share(s) match", want.len())),
            "{query}: {html}"
        );
    }
    let html = exporter
        .get("/shares?status=Accepted&type=Organization")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("<option selected>accepted</option>")
            && html.contains("<option selected>organization</option>"),
        "the boxes show the filter in force: {html}"
    );
    fleet.stop().await;
}
