//! The JSON API (docs/share-browser-and-api.md#json-api): every share with its image and status,
//! unexpected first, filtered and paged; every image with its poll health; the most
//! recent member changes (with their direction); the images shared with us, untrusted
//! first, filtered and paged; behind the web config's basic auth like `/metrics` (and so
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
        ("/api/v1/incoming", "application/json"),
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
        (format!("/api/v1/incoming?{SVG}=1"), "unknown"),
        (format!("/api/v1/incoming?trusted={SVG}"), "trusted"),
        (
            format!("/shares?incoming_status=a&incoming_status={SVG}"),
            "incoming_status",
        ),
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

/// Owners of the images shared with the test project: one trusted, one not.
const TRUSTED_OWNER: &str = "5e1f0c2d3b4a59687766554433221100";
const UNTRUSTED_OWNER: &str = "9f8e7d6c5b4a39281706f5e4d3c2b1a0";
/// Offered images, each ID sorting after the one before.
const OFFER_1: &str = "11111111-1111-4111-8111-111111111111";
const OFFER_2: &str = "22222222-2222-4222-8222-222222222222";
const OFFER_3: &str = "33333333-3333-4333-8333-333333333333";
const OFFER_4: &str = "44444444-4444-4444-8444-444444444444";

/// [`fleet`] listing the images shared with the test project every second, trusting
/// [`TRUSTED_OWNER`]: two offers from each owner, one pending and one accepted.
async fn incoming_fleet() -> Fleet {
    let fleet = fleet().await.config(&format!(
        "incoming:\n  interval: 1s\n  trusted_owners: [{TRUSTED_OWNER}]"
    ));
    let offer = |image: &str, name: &str, owner: &str, status: &str| {
        fleet
            .fake
            .state
            .offer_image(PROJECT, image, name, owner, status)
    };
    offer(OFFER_1, "base", TRUSTED_OWNER, "accepted");
    offer(OFFER_2, "appliance", UNTRUSTED_OWNER, "pending");
    offer(OFFER_3, "gpu", TRUSTED_OWNER, "pending");
    offer(OFFER_4, "trial", UNTRUSTED_OWNER, "accepted");
    fleet
}

fn image_ids(page: &Value) -> Vec<&str> {
    page["incoming"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["image_id"].as_str().unwrap())
        .collect()
}

/// Waits until `/api/v1/incoming` lists `n` offers; returns the page.
async fn listed(exporter: &Exporter, n: usize) -> Value {
    wait_for(&format!("{n} offers listed"), async || {
        let (_, page) = get(exporter, "/api/v1/incoming").await;
        (page["total"] == n).then_some(page)
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn incoming_offers_are_listed_untrusted_first_filtered_and_paged() {
    let fleet = incoming_fleet().await;
    let exporter = fleet.start(&[]).await;
    let page = listed(&exporter, 4).await;
    assert_eq!(page["version"], 1);
    assert_eq!(page["page"], 1);
    assert_eq!(page["per_page"], 100);
    // Untrusted first, then by region, project and image.
    assert_eq!(image_ids(&page), [OFFER_2, OFFER_4, OFFER_1, OFFER_3]);
    let row = &page["incoming"][0];
    for (field, want) in [
        ("region", Value::from(REGION)),
        ("project_id", Value::from(PROJECT)),
        ("image_id", Value::from(OFFER_2)),
        ("image_name", Value::from("appliance")),
        ("owner", Value::from(UNTRUSTED_OWNER)),
        ("member_status", Value::from("pending")),
        ("trusted", Value::from(false)),
    ] {
        assert_eq!(row[field], want, "{field}: {row}");
    }
    let first_seen = row["first_seen"].as_str().unwrap();
    assert!(
        first_seen.len() == 20 && first_seen.ends_with('Z'),
        "RFC 3339: {row}"
    );
    assert_eq!(page["incoming"][2]["trusted"], true);

    for (query, want) in [
        (format!("owner={UNTRUSTED_OWNER}"), vec![OFFER_2, OFFER_4]),
        ("status=Pending".to_string(), vec![OFFER_2, OFFER_3]),
        ("status=ACCEPTED".to_string(), vec![OFFER_4, OFFER_1]),
        ("trusted=true".to_string(), vec![OFFER_1, OFFER_3]),
        ("trusted=false&status=accepted".to_string(), vec![OFFER_4]),
        (
            format!("owner={TRUSTED_OWNER}&status=pending"),
            vec![OFFER_3],
        ),
        // Exact: another case is another owner.
        (format!("owner={}", UNTRUSTED_OWNER.to_uppercase()), vec![]),
        ("status=withdrawn".to_string(), vec![]),
        // Empty values mean "any".
        (
            "owner=&status=&trusted=".to_string(),
            vec![OFFER_2, OFFER_4, OFFER_1, OFFER_3],
        ),
    ] {
        let (status, page) = get(&exporter, &format!("/api/v1/incoming?{query}")).await;
        assert_eq!(status, 200, "{query}: {page}");
        assert_eq!(image_ids(&page), want, "{query}");
        assert_eq!(page["total"], want.len(), "{query}");
    }

    // Paging: the same order, a page at a time.
    let mut paged = Vec::new();
    for n in 1..=4 {
        let (_, page) = get(&exporter, &format!("/api/v1/incoming?per_page=1&page={n}")).await;
        assert_eq!(
            (page["total"].clone(), page["per_page"].clone()),
            (4.into(), 1.into())
        );
        paged.extend(image_ids(&page).into_iter().map(str::to_string));
    }
    assert_eq!(paged, [OFFER_2, OFFER_4, OFFER_1, OFFER_3]);
    let (_, past) = get(&exporter, "/api/v1/incoming?per_page=3&page=9").await;
    assert!(image_ids(&past).is_empty());

    // An unknown parameter (the shares' included), a parameter twice or a value of the
    // wrong form is a 400 naming the parameter.
    for (query, names) in [
        ("unexpected=true", "unknown"),
        ("image=base", "unknown"),
        ("ownr=x", "unknown"),
        ("trusted=yes", "trusted"),
        ("page=x", "page"),
        ("per_page=-1", "per_page"),
        ("status=pending&status=accepted", "status"),
    ] {
        let (status, body) = get(&exporter, &format!("/api/v1/incoming?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body.as_str().unwrap().contains(names), "{query}: {body}");
    }

    // The same offers as metrics; the listing counts as list_shared_images requests.
    let samples = exporter.scrape_samples().await;
    let target = [("region", REGION), ("project_id", PROJECT)];
    for (status, n) in [("pending", 2.0), ("accepted", 2.0), ("rejected", 0.0)] {
        let labels = [target[0], target[1], ("member_status", status)];
        assert_eq!(
            value(&samples, "ims_incoming_images", &labels),
            Some(n),
            "{status}"
        );
    }
    assert_eq!(find(&samples, "ims_incoming_image_info", &target).len(), 4);
    let untrusted = find(&samples, "ims_incoming_image_untrusted", &target);
    let mut got: Vec<(&str, &str, &str)> = untrusted
        .iter()
        .map(|s| {
            (
                s.label("image_id"),
                s.label("owner"),
                s.label("member_status"),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            (OFFER_2, UNTRUSTED_OWNER, "pending"),
            (OFFER_4, UNTRUSTED_OWNER, "accepted")
        ]
    );
    assert_eq!(
        value(&samples, "ims_incoming_poll_success", &target),
        Some(1.0)
    );
    assert!(value(
        &samples,
        "ims_incoming_last_success_timestamp_seconds",
        &target
    )
    .is_some_and(|t| t > 1.7e9));
    assert!(
        !find(
            &samples,
            "ims_api_requests_total",
            &[("operation", "list_shared_images"), ("code", "200")]
        )
        .is_empty(),
        "the listing's requests are counted"
    );
    fleet.stop().await;
}

/// Changes to the images shared with us are rows of `/api/v1/changes` with
/// `direction: incoming` and their owner; the others say `outgoing`, owner `null`. A
/// failed listing keeps the last good list (and says so in the metrics).
#[tokio::test(flavor = "multi_thread")]
async fn incoming_changes_say_their_direction_and_owner() {
    let fleet = incoming_fleet().await;
    let exporter = fleet.start(&[]).await;
    listed(&exporter, 4).await;
    let fake = &fleet.fake;
    assert!(fake.state.set_offer_status(PROJECT, OFFER_2, "accepted"));
    assert!(fake.state.withdraw_offer(PROJECT, OFFER_3));
    assert!(fake.state.remove_member(PROJECT, IMG, PENDING));
    let list = wait_for("three changes", async || {
        let (_, list) = get(&exporter, "/api/v1/changes").await;
        (list["changes"].as_array()?.len() == 3).then_some(list)
    })
    .await;
    let rows = list["changes"].as_array().unwrap();
    let row = |image: &str| rows.iter().find(|r| r["image_id"] == image).unwrap();
    let accepted = row(OFFER_2);
    for (field, want) in [
        ("direction", Value::from("incoming")),
        ("change", Value::from("status_changed")),
        ("owner", Value::from(UNTRUSTED_OWNER)),
        ("old_status", Value::from("pending")),
        ("status", Value::from("accepted")),
        ("unexpected", Value::from(true)),
        ("member_id", Value::from("")),
        ("image_name", Value::from("appliance")),
    ] {
        assert_eq!(accepted[field], want, "{field}: {accepted}");
    }
    let withdrawn = row(OFFER_3);
    assert_eq!(
        (
            &withdrawn["direction"],
            &withdrawn["change"],
            &withdrawn["owner"]
        ),
        (&"incoming".into(), &"removed".into(), &TRUSTED_OWNER.into()),
        "{withdrawn}"
    );
    assert_eq!(withdrawn["unexpected"], false);
    let removed = row(IMG);
    assert_eq!(
        (&removed["direction"], &removed["change"], &removed["owner"]),
        (&"outgoing".into(), &"removed".into(), &Value::Null),
        "{removed}"
    );
    // The share browser lists them readably: direction and owner.
    let page = exporter.get("/shares").await.text().await.unwrap();
    let table = &page[page.find("<table id=\"changes\">").expect("changes")..];
    let table = &table[..table.find("</table>").unwrap()];
    assert!(
        table.contains("status changed<br><small>shared with us</small>")
            && table.contains(&format!("shared by {UNTRUSTED_OWNER} (untrusted)"))
            && table.contains(&format!("shared by {TRUSTED_OWNER}</td>"))
            && table.contains("pending → accepted"),
        "{table}"
    );

    // A failing listing: the last good list stays, the metrics say it failed.
    fake.state
        .set_shared_fault(PROJECT, Some(ims_exporter::fake_ims::Fault::Status(500)));
    wait_for("the failed listing", async || {
        let samples = exporter.scrape_samples().await;
        let target = [("region", REGION), ("project_id", PROJECT)];
        (value(&samples, "ims_incoming_poll_success", &target) == Some(0.0)).then_some(())
    })
    .await;
    let (_, page) = get(&exporter, "/api/v1/incoming").await;
    assert_eq!(image_ids(&page), [OFFER_2, OFFER_4, OFFER_1]);
    fleet.stop().await;
}

/// Without `incoming:` the endpoint answers an empty list (and the exposition has no
/// `ims_incoming_` family).
#[tokio::test(flavor = "multi_thread")]
async fn incoming_is_empty_without_the_config_block() {
    let fleet = fleet().await;
    fleet
        .fake
        .state
        .offer_image(PROJECT, OFFER_1, "base", UNTRUSTED_OWNER, "pending");
    let exporter = fleet.start(&[]).await;
    let (status, page) = get(&exporter, "/api/v1/incoming").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        page,
        serde_json::json!({"version": 1, "total": 0, "page": 1, "per_page": 100, "incoming": []})
    );
    assert!(!exporter.scrape().await.contains("ims_incoming_"));
    let html = exporter.get("/shares").await.text().await.unwrap();
    assert!(!html.contains("Shared with us"), "{html}");
    fleet.stop().await;
}
