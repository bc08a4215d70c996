//! The exporter conventions of exporter-toolkit and Prometheus 3, against the real
//! binary: several `--web.listen-address`es, `--web.systemd-socket` under systemd's
//! own `systemd-socket-activate`, content negotiation for every Accept header
//! Prometheus 2 and 3 send, and the landing page.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::fleet::Fleet;
use crate::support::*;

const IMG: &str = "d164b5df-1bc3-4c3f-893e-3e471fd16e64";
const ALLOWED: &str = "edc89b490d7d4392898e19b2deb34797";
const STRANGER: &str = "0badc0de0badc0de0badc0de0badc0d";

/// The addresses an exporter's log says it listens on.
fn listening(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l.contains("message=listening"))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|f| f.strip_prefix("address="))
                .map(str::to_string)
        })
        .collect()
}

async fn scrape_ok(url: &str) {
    let r = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    assert_eq!(r.status(), 200, "{url}");
    let body = r.text().await.unwrap();
    assert!(body.contains("ims_images_monitored 1"), "{url}:\n{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn several_listen_addresses_serve_the_same_exporter() {
    let fleet = Fleet::new().await.images(&[IMG]);
    // The helper adds 127.0.0.1:0; a second address on IPv6 loopback.
    let exporter = fleet.start(&["--web.listen-address", "[::1]:0"]).await;
    let addresses = listening(&exporter.log_lines());
    assert_eq!(addresses.len(), 2, "{}", exporter.logs());
    assert!(
        addresses.iter().any(|a| a.starts_with("[::1]:")),
        "{addresses:?}"
    );
    assert!(
        addresses.iter().any(|a| a.starts_with("127.0.0.1:")),
        "{addresses:?}"
    );
    for a in &addresses {
        scrape_ok(&format!("http://{a}/metrics")).await;
    }
    // One that cannot be bound (already taken) stops the start, naming the flag.
    let taken = &addresses[0];
    let out = fleet_once_listen(&fleet, taken).await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("--web.listen-address {taken}")),
        "{}",
        describe(&out)
    );
    drop(exporter);
    fleet.stop().await;
}

/// Runs the daemon on the fleet's config with `--web.listen-address ADDR` (and a
/// second, free address first) until it exits by itself.
async fn fleet_once_listen(fleet: &Fleet, address: &str) -> std::process::Output {
    let config = fleet.write_config();
    let mut cmd = command();
    cmd.arg("--config.file")
        .arg(&config)
        .args(["--web.listen-address", "127.0.0.1:0"])
        .args(["--web.listen-address", address]);
    run_tool(cmd, None, Duration::from_secs(30)).await
}

/// A free loopback port (the socket is closed again; systemd-socket-activate binds it).
fn free_port(host: &str) -> u16 {
    std::net::TcpListener::bind((host, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[tokio::test(flavor = "multi_thread")]
async fn systemd_socket_activation_serves_on_the_passed_sockets() {
    if !require_tool("systemd-socket-activate") {
        return;
    }
    let fleet = Fleet::new().await.images(&[IMG]);
    let config = fleet.write_config();
    let v4 = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let v6 = format!("[::1]:{}", free_port("::1"));
    // systemd's tool binds both, then execs the exporter (on the first connection)
    // with the sockets as fds 3 and 4 and LISTEN_FDS/LISTEN_PID set.
    let mut cmd = Command::new("systemd-socket-activate");
    cmd.args(["-l", &v4, "-l", &v6])
        .arg(bin())
        .arg("--config.file")
        .arg(&config)
        .arg("--web.systemd-socket")
        // Ignored with --web.systemd-socket, as in exporter-toolkit.
        .args(["--web.listen-address", "127.0.0.1:1"])
        .env_remove("HUAWEICLOUD_SDK_AK")
        .env_remove("HUAWEICLOUD_SDK_SK")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = KillOnDrop(cmd.spawn().expect("spawn systemd-socket-activate"));
    let logs = Arc::new(Mutex::new(Vec::<String>::new()));
    let stderr = child.0.stderr.take().unwrap();
    let sink = logs.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    let all_logs = || logs.lock().unwrap().join("\n");
    let client = reqwest::Client::new();
    wait_for("the activated exporter to be ready", async || {
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!("exited early with {status}:\n{}", all_logs());
        }
        let r = client
            .get(format!("http://{v4}/-/ready"))
            .send()
            .await
            .ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    scrape_ok(&format!("http://{v4}/metrics")).await;
    scrape_ok(&format!("http://{v6}/metrics")).await;
    let lines = logs.lock().unwrap().clone();
    let mut addresses = listening(&lines);
    addresses.sort();
    let mut want = vec![v4.clone(), v6.clone()];
    want.sort();
    assert_eq!(addresses, want, "{}", all_logs());

    // After exec the child is the exporter: SIGTERM stops it cleanly.
    signal(child.0.id(), "-TERM");
    let status = wait_for("the exporter to exit", async || {
        child.0.try_wait().ok().flatten()
    })
    .await;
    assert_eq!(status.code(), Some(0), "{}", all_logs());
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn systemd_socket_refuses_a_socket_that_is_not_tcp() {
    if !require_tool("systemd-socket-activate") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exporter.sock");
    let mut cmd = Command::new("systemd-socket-activate");
    cmd.arg("-l")
        .arg(&path)
        .arg(bin())
        .args(["--demo", "--web.systemd-socket"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = KillOnDrop(cmd.spawn().expect("spawn systemd-socket-activate"));
    // The first connection makes systemd-socket-activate exec the exporter.
    wait_for("the socket", async || {
        std::os::unix::net::UnixStream::connect(&path).ok()
    })
    .await;
    let status = wait_for("the exporter to refuse the socket", async || {
        child.0.try_wait().ok().flatten()
    })
    .await;
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--web.systemd-socket: file descriptor 3: not a TCP listening socket"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn systemd_socket_without_sockets_fails_naming_the_flag() {
    let mut cmd = command();
    cmd.args(["--demo", "--web.systemd-socket"])
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID");
    let out = run_tool(cmd, None, Duration::from_secs(30)).await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("--web.systemd-socket: no socket activation file descriptors found"),
        "{}",
        describe(&out)
    );
}

/// Every Accept header Prometheus sends (scrape/scrape.go `acceptHeader` and the
/// protocol headers of each release), and what client_golang answers.
const ACCEPT: &[(&str, &str, &str)] = &[
    (
        "Prometheus 2.42 (Debian's; before scrape_protocols)",
        "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
        "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores",
    ),
    (
        "Prometheus 2.49-2.55 default scrape_protocols",
        "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
        "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores",
    ),
    (
        "Prometheus 2 with native histograms (protobuf first)",
        "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.5,application/openmetrics-text;version=1.0.0;q=0.4,application/openmetrics-text;version=0.0.1;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1",
        "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores",
    ),
    (
        "Prometheus 2, scrape_protocols: [PrometheusText0.0.4]",
        "text/plain;version=0.0.4;q=0.5,*/*;q=0.4",
        "text/plain; version=0.0.4; charset=utf-8; escaping=underscores",
    ),
    (
        "Prometheus 2, scrape_protocols: [OpenMetricsText0.0.1]",
        "application/openmetrics-text;version=0.0.1;q=0.5,*/*;q=0.4",
        "application/openmetrics-text; version=0.0.1; charset=utf-8; escaping=underscores",
    ),
    (
        "Prometheus 3 default (UTF-8 names)",
        "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
        "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=allow-utf-8",
    ),
    (
        "Prometheus 3, metric_name_escaping_scheme: underscores",
        "application/openmetrics-text;version=1.0.0;escaping=underscores;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=underscores;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
        "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores",
    ),
    (
        "Prometheus 3, metric_name_escaping_scheme: dots",
        "application/openmetrics-text;version=1.0.0;escaping=dots;q=0.6,*/*;q=0.5",
        "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=dots",
    ),
    (
        "Prometheus 3, scrape_protocols: [PrometheusText1.0.0]",
        "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.6,*/*;q=0.5",
        "text/plain; version=1.0.0; charset=utf-8; escaping=allow-utf-8",
    ),
    (
        "Prometheus 3, scrape_protocols: [PrometheusText0.0.4]",
        "text/plain;version=0.0.4;q=0.6,*/*;q=0.5",
        "text/plain; version=0.0.4; charset=utf-8; escaping=underscores",
    ),
    (
        "Prometheus 3, protobuf first",
        "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1",
        "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=allow-utf-8",
    ),
    (
        "curl",
        "*/*",
        "text/plain; version=0.0.4; charset=utf-8; escaping=underscores",
    ),
];

#[tokio::test(flavor = "multi_thread")]
async fn every_accept_header_prometheus_sends_gets_a_format_it_asked_for() {
    let fleet = Fleet::new().await.images(&[IMG]);
    let exporter = fleet.start(&[]).await;
    let client = reqwest::Client::new();
    for (who, accept, want) in ACCEPT {
        let r = client
            .get(exporter.url("/metrics"))
            .header("accept", *accept)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{who}");
        assert_eq!(
            r.headers()["content-type"],
            *want,
            "{who}: Accept: {accept}"
        );
        let vary = r.headers()["vary"].to_str().unwrap().to_string();
        assert!(vary.contains("Accept,"), "{who}: Vary: {vary}");
        let body = r.text().await.unwrap();
        let openmetrics = want.starts_with("application/openmetrics-text");
        // The body is the format the header names.
        assert_eq!(body.ends_with("# EOF\n"), openmetrics, "{who}");
        let counter = if openmetrics {
            "# TYPE ims_api_requests counter"
        } else {
            "# TYPE ims_api_requests_total counter"
        };
        assert!(body.contains(counter), "{who}: {counter}");
    }
    // Without an Accept header: text 0.0.4.
    let r = reqwest::get(exporter.url("/metrics")).await.unwrap();
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8; escaping=underscores"
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_landing_page_names_the_exporter_and_links_every_page() {
    let fleet = Fleet::new()
        .await
        .image(IMG, "name: golden")
        .config(&format!("allowed_members: [{ALLOWED}]"));
    for id in [ALLOWED, STRANGER] {
        share(&fleet.fake, PROJECT, IMG, id, "accepted");
    }
    let exporter = fleet.start(&["--web.telemetry-path", "/m"]).await;
    let r = exporter.get("/").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    assert!(r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    let page = r.text().await.unwrap();
    assert!(page.contains("<h1>IMS Exporter</h1>"), "{page}");
    assert!(
        page.contains(&format!("Version: {}", env!("CARGO_PKG_VERSION"))),
        "{page}"
    );
    for href in [
        "/m",
        "/shares",
        "/-/healthy",
        "/-/ready",
        "/api/v1/shares",
        "/api/v1/images",
        "/api/v1/changes",
        "/api/v1/incoming",
    ] {
        assert!(
            page.contains(&format!("<a href=\"{href}\">")),
            "{href}: {page}"
        );
        let status = exporter.get(href).await.status();
        assert_eq!(status, 200, "{href} is served");
    }
    assert!(
        page.contains("1 image(s) monitored; 2 share(s), <a class=\"bad\" href=\"/shares?unexpected=true\">1 unexpected</a>"),
        "{page}"
    );
    fleet.stop().await;
}

/// An `Accept` header of many clauses with a `q` that is not a number (issue 19, item
/// 1) made the clause sort panic and the scrape got an empty reply. An invalid `q`
/// skips its clause; every such header gets a full scrape.
#[tokio::test(flavor = "multi_thread")]
async fn an_accept_header_with_invalid_qvalues_still_gets_a_full_scrape() {
    let fleet = Fleet::new().await.images(&[IMG]);
    let exporter = fleet.start(&[]).await;
    let client = reqwest::Client::new();
    let repeat = |clauses: &[&str], n: usize| -> String {
        clauses
            .iter()
            .cycle()
            .take(n)
            .copied()
            .collect::<Vec<_>>()
            .join(",")
    };
    let nan = |n| {
        repeat(
            &["text/plain;q=NaN", "text/plain;q=0.1", "text/plain;q=0.2"],
            n,
        )
    };
    let text = "text/plain; version=0.0.4; charset=utf-8; escaping=underscores";
    let openmetrics =
        "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores";
    let headers = [
        // The issue's header: 24 clauses and more, some with q=NaN (this one
        // panicked the sort).
        (nan(24), text),
        (nan(64), text),
        (repeat(&["text/plain;q=NaN", "text/plain;q=0.1"], 64), text),
        (
            repeat(
                &[
                    "application/openmetrics-text;version=1.0.0;q=NaN",
                    "text/plain;q=0.3",
                    "*/*;q=nan",
                    "text/plain;version=1.0.0;q=0.2",
                    "application/json;q=0.9",
                ],
                200,
            ),
            text,
        ),
        (
            repeat(
                &[
                    "text/plain;q=inf",
                    "text/plain;q=1e309",
                    "text/plain;q=-1",
                    "text/plain;q=",
                    "text/plain;q=0.5.5",
                    "application/openmetrics-text;version=1.0.0;Q=0.1",
                ],
                3000,
            ),
            openmetrics,
        ),
    ];
    for (accept, want) in headers {
        let short = &accept[..60];
        let r = client
            .get(exporter.url("/metrics"))
            .header("accept", &accept)
            .send()
            .await
            .unwrap_or_else(|e| panic!("Accept: {short}…: {e}"));
        assert_eq!(r.status(), 200, "Accept: {short}…");
        assert_eq!(r.headers()["content-type"], want, "Accept: {short}…");
        let body = r
            .text()
            .await
            .unwrap_or_else(|e| panic!("Accept: {short}…: {e}"));
        assert!(
            body.contains("ims_images_monitored 1"),
            "Accept: {short}…: a full body:\n{body}"
        );
    }
    // The process is still there and serving.
    scrape_ok(&exporter.url("/metrics")).await;
    fleet.stop().await;
}

/// `Accept-Encoding` as RFC 9110 reads it (issue 19, item 11): codings and parameter
/// names are case-insensitive, `q` is a decimal whose zero is any `0`, `0.0`, `0.000`,
/// and `*` stands for every coding not listed.
#[tokio::test(flavor = "multi_thread")]
async fn accept_encoding_is_read_as_rfc_9110_says() {
    let fleet = Fleet::new().await.images(&[IMG]);
    let exporter = fleet.start(&[]).await;
    let client = reqwest::Client::new();
    for (accept_encoding, gzip) in [
        ("gzip", true),
        ("GZIP", true),
        ("Gzip;Q=1", true),
        ("x-gzip", true),
        ("deflate, gzip;q=1.0, *;q=0.5", true),
        ("br;q=1, gzip;q=0.001", true),
        ("*", true),
        ("gzip;q=0", false),
        ("gzip;q=0.0", false),
        ("gzip;q=0.000", false),
        ("gzip;Q=0", false),
        ("GZIP ; q=0.00", false),
        ("*;q=0", false),
        ("gzip;q=0, *", false),
        ("identity", false),
        ("deflate, br", false),
        ("", false),
        // An invalid q skips its clause.
        ("gzip;q=NaN", false),
        ("gzip;q=2", false),
        ("gzip;q=1e309", false),
        ("gzip;q=-1", false),
        ("gzip;q=0.0001", false),
    ] {
        let r = client
            .get(exporter.url("/metrics"))
            .header("accept-encoding", accept_encoding)
            .send()
            .await
            .unwrap_or_else(|e| panic!("Accept-Encoding: {accept_encoding}: {e}"));
        assert_eq!(r.status(), 200, "Accept-Encoding: {accept_encoding}");
        let encoding = r.headers().get("content-encoding").cloned();
        let bytes = r.bytes().await.unwrap();
        let body = if gzip {
            assert_eq!(
                encoding.as_ref().map(|v| v.to_str().unwrap()),
                Some("gzip"),
                "Accept-Encoding: {accept_encoding}"
            );
            let mut text = String::new();
            std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut text)
                .unwrap_or_else(|e| panic!("Accept-Encoding: {accept_encoding}: {e}"));
            text
        } else {
            assert_eq!(encoding, None, "Accept-Encoding: {accept_encoding}");
            String::from_utf8(bytes.to_vec()).unwrap()
        };
        assert!(
            body.contains("ims_images_monitored 1"),
            "Accept-Encoding: {accept_encoding}"
        );
    }
    fleet.stop().await;
}
