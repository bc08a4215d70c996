//! The exporter's output is what Prometheus accepts: `promtool check metrics` lints it,
//! and a real Prometheus server scrapes it and answers queries with exactly the fake's
//! members.
//!
//! Needs Debian's `prometheus` package (`prometheus` and `promtool`, 2.42). Without
//! them the tests print SKIPPED, except under `CI=true`, where they fail.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::support;
use crate::support::{describe, run_tool, Exporter, Fleet, KillOnDrop, PROJECT};
use ims_exporter::fake_ims;
use serde_json::Value;

const IMAGE: &str = "370befec-a369-475e-a224-44a45927a8fe";
const ORG_ID: &str = "ou-5x1bvygwrplokk622i9gbn3f5ftfb2l9";
const ORG_URN: &str = "organizations::3a2d95404f964a6aba78819bf8ddc1e3:ou:o-wvntq58r3poyv180t5df1mdna4uwy9se/ou-5x1bvygwrplokk622i9gbn3f5ftfb2l9";
const ROOT_ORG_ID: &str = "o-wvntq58r3poyv180t5df1mdna4uwy9se";
const ROOT_ORG_URN: &str = "organizations::3a2d95404f964a6aba78819bf8ddc1e3:organization:o-wvntq58r3poyv180t5df1mdna4uwy9se";
/// A status IMS does not document, with characters a label value must escape.
/// Quotes, a backslash, a newline and non-ASCII: everything a label value must escape
/// or carry through as UTF-8.
const ODD_STATUS: &str = "under \"review\" \\ 2\nprüfung 審査";
const TOOL_TIMEOUT: Duration = Duration::from_secs(30);
const OPENMETRICS_ACCEPT: &str = "application/openmetrics-text; version=1.0.0";
/// The Accept header Prometheus 2.42 scrapes with (scrape/scrape.go, `scrapeAcceptHeader`).
const PROMETHEUS_2_42_ACCEPT: &str =
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// (member_id, member_type, status, urn) — a member as `ims_image_member_info` labels it.
type MemberKey = (String, String, String, String);

/// A fleet for one image shared with members of every type (organizations with URNs)
/// and status, plus one undocumented status that needs escaping.
async fn fleet_with_members() -> (Fleet, BTreeSet<MemberKey>) {
    let fleet = Fleet::new().await.images(&[IMAGE]);
    let s = &fleet.fake.state;
    s.add_image(PROJECT, IMAGE, "golden-debian-12");
    let t0 = "2023-08-23T04:07:52Z";
    let t1 = "2024-01-02T03:04:05Z";
    let members = [
        (
            "0a1b2c3d4e5f60718293a4b5c6d7e8f9",
            "project",
            "accepted",
            None,
        ),
        (
            "1b2c3d4e5f60718293a4b5c6d7e8f90a",
            "project",
            "pending",
            None,
        ),
        (
            "2c3d4e5f60718293a4b5c6d7e8f90a1b",
            "project",
            "rejected",
            None,
        ),
        (
            "3d4e5f60718293a4b5c6d7e8f90a1b2c",
            "project",
            ODD_STATUS,
            None,
        ),
        (
            "d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0",
            "domain",
            "accepted",
            None,
        ),
        (
            "d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1",
            "domain",
            "pending",
            None,
        ),
        (ORG_ID, "organization", "accepted", Some(ORG_URN)),
        (ROOT_ORG_ID, "organization", "rejected", Some(ROOT_ORG_URN)),
    ];
    for (id, kind, status, urn) in members {
        s.put_member(
            PROJECT,
            fake_ims::member(IMAGE, id, kind, status, t0, t1, urn),
        );
    }
    let expected = s
        .members(PROJECT, IMAGE)
        .into_iter()
        .map(|m| {
            (
                m.member_id,
                m.member_type.unwrap_or_default(),
                m.status.unwrap_or_default(),
                m.urn.unwrap_or_default(),
            )
        })
        .collect::<BTreeSet<_>>();
    assert_eq!(expected.len(), members.len(), "fixture");
    (fleet, expected)
}

async fn promtool_check_metrics(body: String) -> Output {
    let mut cmd = Command::new("promtool");
    cmd.args(["check", "metrics"]);
    run_tool(cmd, Some(body), TOOL_TIMEOUT).await
}

/// Whether this promtool lints OpenMetrics: it must accept a minimal valid
/// OpenMetrics counter (family `x`, sample `x_total`). promtool 2.42 does not: it
/// parses only the classic text format and calls that "no help text".
async fn promtool_understands_openmetrics() -> bool {
    let probe =
        "# HELP probe_events A probe.\n# TYPE probe_events counter\nprobe_events_total 1\n# EOF\n";
    promtool_check_metrics(probe.into()).await.status.success()
}

async fn scrape_as(exporter: &Exporter, accept: Option<&str>) -> (String, String) {
    let client = reqwest::Client::new();
    let mut req = client.get(exporter.url("/metrics"));
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let resp = req.send().await.expect("scrape");
    assert_eq!(resp.status(), 200, "scrape status");
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (ctype, resp.text().await.expect("scrape body"))
}

#[tokio::test(flavor = "multi_thread")]
async fn promtool_accepts_the_exposition() {
    if !support::require_tool("promtool") {
        return;
    }
    let (fleet, expected) = fleet_with_members().await;
    let exporter = fleet.start(&[]).await;

    // Classic text format, as served to a scraper that does not ask for OpenMetrics.
    let (ctype, body) = scrape_as(&exporter, None).await;
    assert!(
        ctype.starts_with("text/plain; version=0.0.4"),
        "content type {ctype:?}"
    );
    // The body really holds the members, so promtool is linting the interesting part.
    let samples = support::parse_exposition(&body);
    let info: BTreeSet<MemberKey> =
        support::find(&samples, "ims_image_member_info", &[("image_id", IMAGE)])
            .into_iter()
            .map(|s| {
                (
                    s.label("member_id").into(),
                    s.label("member_type").into(),
                    s.label("status").into(),
                    s.label("urn").into(),
                )
            })
            .collect();
    assert_eq!(
        info, expected,
        "ims_image_member_info in the scraped body:\n{body}"
    );
    let out = promtool_check_metrics(body.clone()).await;
    assert!(
        out.status.success(),
        "promtool check metrics refused the text exposition:\n{}\n--- body ---\n{body}",
        describe(&out)
    );

    // OpenMetrics, when asked for it; only if this promtool can lint that format.
    let (ctype, om) = scrape_as(&exporter, Some(OPENMETRICS_ACCEPT)).await;
    assert!(
        ctype.starts_with("application/openmetrics-text; version=1.0.0"),
        "content type {ctype:?}"
    );
    assert!(
        om.ends_with("# EOF\n"),
        "OpenMetrics body must end with # EOF"
    );
    if promtool_understands_openmetrics().await {
        let out = promtool_check_metrics(om.clone()).await;
        assert!(
            out.status.success(),
            "promtool check metrics refused the OpenMetrics exposition:\n{}\n--- body ---\n{om}",
            describe(&out)
        );
    } else {
        eprintln!("SKIPPED (OpenMetrics part): this promtool lints only the classic text format; the Prometheus scrape test covers OpenMetrics");
    }

    drop(exporter);
    fleet.stop().await;
}

/// A real Prometheus server with its data in a temporary directory; killed on drop.
struct Prometheus {
    child: KillOnDrop,
    port: u16,
    log: std::path::PathBuf,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` every second on a free loopback port,
    /// retrying on another port if the one picked was taken meanwhile.
    async fn start(dir: &Path, target: &str) -> Prometheus {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: ims\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("write prometheus.yml");
        let mut last_log = String::new();
        for attempt in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .expect("bind")
                .local_addr()
                .expect("addr")
                .port();
            let data = dir.join(format!("data-{attempt}"));
            let log = dir.join(format!("prometheus-{attempt}.log"));
            let log_file = std::fs::File::create(&log).expect("create log");
            let child = Command::new("prometheus")
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.tsdb.path={}", data.display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("log fd"))
                .stderr(log_file)
                .spawn()
                .expect("spawn prometheus");
            let mut prom = Prometheus {
                child: KillOnDrop(child),
                port,
                log,
            };
            let up = support::wait_for("Prometheus to be ready", async || {
                if let Ok(Some(_)) = prom.child.0.try_wait() {
                    return Some(false); // exited: most likely the port was taken
                }
                let ok = reqwest::get(prom.url("/-/ready"))
                    .await
                    .is_ok_and(|r| r.status() == 200);
                ok.then_some(true)
            })
            .await;
            // Ready, and still ours: not some other server that holds the port.
            if up && matches!(prom.child.0.try_wait(), Ok(None)) {
                return prom;
            }
            last_log = prom.logs();
        }
        panic!("Prometheus did not start after 5 attempts; last log:\n{last_log}");
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The result vector of an instant query (panics on an API error).
    async fn query(&self, expr: &str) -> Vec<Value> {
        let q: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("query", expr)
            .finish();
        let resp = reqwest::get(self.url(&format!("/api/v1/query?{q}")))
            .await
            .expect("query Prometheus");
        let body: Value = resp.json().await.expect("query JSON");
        assert_eq!(body["status"], "success", "query {expr} failed: {body}");
        body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The value of a query that yields exactly one sample.
    async fn scalar(&self, expr: &str) -> Option<f64> {
        match self.query(expr).await.as_slice() {
            [one] => one["value"][1].as_str().and_then(|v| v.parse().ok()),
            _ => None,
        }
    }
}

fn label(series: &Value, name: &str) -> String {
    series["metric"][name].as_str().unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn real_prometheus_scrapes_the_exporter() {
    if !support::require_tool("prometheus") {
        return;
    }
    let (fleet, expected) = fleet_with_members().await;
    let exporter = fleet.start(&[]).await;
    let target = exporter.addr.clone();
    assert!(
        target.starts_with("127.0.0.1:"),
        "exporter listens on {target}"
    );
    // Prometheus asks for OpenMetrics first, so this test is what checks that format
    // with a real parser (promtool 2.42 lints only the classic text format).
    let (ctype, _) = scrape_as(&exporter, Some(PROMETHEUS_2_42_ACCEPT)).await;
    assert!(
        ctype.starts_with("application/openmetrics-text"),
        "Prometheus would get {ctype:?}"
    );
    let prom = Prometheus::start(fleet.dir.path(), &target).await;

    support::wait_for(
        "Prometheus to scrape the exporter successfully",
        async || (prom.scalar(r#"up{job="ims"}"#).await == Some(1.0)).then_some(()),
    )
    .await;
    let total = expected.len() as f64;
    support::wait_for(
        "sum(ims_image_members) to equal the fake's member count",
        async || {
            (prom
                .scalar(&format!(
                    r#"sum(ims_image_members{{job="ims",image_id="{IMAGE}"}})"#
                ))
                .await
                == Some(total))
            .then_some(())
        },
    )
    .await;
    // Only the members with the undocumented status: escaping survived the round trip.
    let odd = prom
        .query(&format!(
            r#"ims_image_members{{job="ims",status="{}"}}"#,
            ODD_STATUS
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
        ))
        .await;
    assert_eq!(odd.len(), 1, "series with the escaped status: {odd:?}");
    assert_eq!(odd[0]["value"][1], "1", "{odd:?}");

    // Organizations, with their URNs, exactly as the fake holds them.
    let orgs = prom
        .query(r#"ims_image_member_info{job="ims",member_type="organization"}"#)
        .await;
    let got: BTreeSet<(String, String)> = orgs
        .iter()
        .map(|s| (label(s, "member_id"), label(s, "urn")))
        .collect();
    let want: BTreeSet<(String, String)> = expected
        .iter()
        .filter(|(_, t, _, _)| t == "organization")
        .map(|(id, _, _, urn)| (id.clone(), urn.clone()))
        .collect();
    assert_eq!(got, want, "organization members in Prometheus");
    assert!(
        orgs.iter()
            .all(|s| label(s, "image_id") == IMAGE && label(s, "project_id") == PROJECT),
        "{orgs:?}"
    );

    // Every member, with every label, as Prometheus stored it.
    let all = prom.query(r#"ims_image_member_info{job="ims"}"#).await;
    let got: BTreeSet<MemberKey> = all
        .iter()
        .map(|s| {
            (
                label(s, "member_id"),
                label(s, "member_type"),
                label(s, "status"),
                label(s, "urn"),
            )
        })
        .collect();
    assert_eq!(all.len(), expected.len(), "one series per member: {all:?}");
    assert_eq!(got, expected, "ims_image_member_info in Prometheus");
    assert_eq!(
        prom.scalar(r#"count(ims_image_member_info{job="ims"} != 1)"#)
            .await,
        None,
        "info series must be 1"
    );

    drop(prom);
    drop(exporter);
    fleet.stop().await;
}
