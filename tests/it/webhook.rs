//! `POST /api/v1/events` (`events.webhook`) on the real binary: every body shape
//! accepted, every refusal with its status and `ims_webhook_requests_total{result}`,
//! the route off without the block and swapped by a reload, basic auth not in its way
//! (TLS is), and SMN: subscriptions confirmed only for an allowed host and topic, and
//! signatures checked with a certificate served over HTTPS on loopback (a test CA in
//! the config's `ca_file`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{header, StatusCode, Uri};
use axum::Router;
use base64::Engine;
use rcgen::{CertificateParams, DnType, KeyPair, SigningKey};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::pki::Ca;
use crate::support::*;

const TOKEN: &str = "webhook-TOKEN-5f4e3d2c1b0a99887766";
const TOPIC: &str = "urn:smn:cn-north-4:1bed856811654c1cb661a6ca845ebc77:ims-events";
const OTHER_TOPIC: &str = "urn:smn:cn-north-4:1bed856811654c1cb661a6ca845ebc77:other";
const PATH: &str = "/api/v1/events";
/// The endpoint's body cap (256 KiB).
const MAX_BODY: usize = 256 * 1024;

/// A CTS trace as CTS lists it.
fn trace(id: &str) -> Value {
    json!({
        "trace_id": id,
        "trace_name": "addMember",
        "trace_type": "ApiCall",
        "trace_rating": "normal",
        "service_type": "IMS",
        "resource_type": "image",
        "resource_id": IMG,
        "code": "200",
        "time": 1720604624000i64,
        "record_time": 1720604625000i64,
        "user": {"id": "u1", "name": "alice", "domain": {"id": "d1", "name": "acme"}},
    })
}

/// Writes the token file; returns the `events:` block (YAML) with `extra` keys under
/// `webhook:`.
fn events_block(dir: &Path, extra: &str) -> String {
    let token_file = dir.join("webhook-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let mut block = format!(
        "events:\n  webhook:\n    token_file: {}\n",
        token_file.display()
    );
    for line in extra.lines().filter(|l| !l.trim().is_empty()) {
        block.push_str(&format!("    {line}\n"));
    }
    block
}

const IMG: &str = "d164b5df-1bc3-4c3f-893e-3e471fd16e64";

/// A fake IMS sharing one image, and a config that watches it.
async fn fleet() -> Fleet {
    Fleet::new().await.shared(&[IMG]).images(&[IMG])
}

/// [`fleet`], its config with the webhook and `extra` keys.
async fn webhook_fleet(extra: &str) -> Fleet {
    let fleet = fleet().await;
    let block = events_block(fleet.dir.path(), extra);
    fleet.config(&block)
}

fn client() -> reqwest::Client {
    init_tls();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A POST of `body` as `content_type` with the token in the header; (status, body).
async fn post(url: &str, content_type: &str, token: Option<&str>, body: String) -> (u16, String) {
    let mut req = client()
        .post(url)
        .header(header::CONTENT_TYPE, content_type)
        .body(body);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let r = req.send().await.expect("POST to the webhook");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

async fn post_json(exporter: &Exporter, body: &Value) -> (u16, String) {
    post(
        &exporter.url(PATH),
        "application/json",
        Some(TOKEN),
        body.to_string(),
    )
    .await
}

/// `ims_webhook_requests_total{result}` now (0 when not rendered yet).
async fn count(exporter: &Exporter, result: &str) -> f64 {
    let samples = exporter.scrape_samples().await;
    value(
        &samples,
        "ims_webhook_requests_total",
        &[("result", result)],
    )
    .unwrap_or(0.0)
}

async fn counts(exporter: &Exporter) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for r in [
        "accepted",
        "unauthorized",
        "invalid",
        "too_large",
        "throttled",
        "unverified",
    ] {
        out.push((r.to_string(), count(exporter, r).await));
    }
    out
}

fn expect_counts(pairs: &[(&str, f64)]) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = [
        "accepted",
        "unauthorized",
        "invalid",
        "too_large",
        "throttled",
        "unverified",
    ]
    .iter()
    .map(|r| (r.to_string(), 0.0))
    .collect();
    for (r, n) in pairs {
        out.iter_mut().find(|(k, _)| k == r).unwrap().1 = *n;
    }
    out
}

/// An SMN message as SMN posts it, signed by `signer` when given.
struct Smn<'a> {
    kind: &'a str,
    topic: &'a str,
    message: String,
    subject: Option<&'a str>,
    subscribe_url: Option<String>,
    cert_url: Option<String>,
}

impl Smn<'_> {
    fn notification(message: String) -> Smn<'static> {
        Smn {
            kind: "Notification",
            topic: TOPIC,
            message,
            subject: Some("IMS key event"),
            subscribe_url: None,
            cert_url: None,
        }
    }

    fn confirmation(topic: &str, subscribe_url: String) -> Smn<'_> {
        Smn {
            kind: "SubscriptionConfirmation",
            topic,
            message: "You are invited to subscribe to topic ims-events".into(),
            subject: None,
            subscribe_url: Some(subscribe_url),
            cert_url: None,
        }
    }

    /// The string SMN signs: the fields in alphabetical order, `name\nvalue\n` each.
    fn canonical(&self, message_id: &str, timestamp: &str) -> String {
        let mut fields = vec![
            ("message", self.message.as_str()),
            ("message_id", message_id),
        ];
        if self.kind == "Notification" {
            if let Some(s) = self.subject {
                fields.push(("subject", s));
            }
        } else {
            fields.push(("subscribe_url", self.subscribe_url.as_deref().unwrap()));
        }
        fields.extend([
            ("timestamp", timestamp),
            ("topic_urn", self.topic),
            ("type", self.kind),
        ]);
        fields.iter().map(|(k, v)| format!("{k}\n{v}\n")).collect()
    }

    fn body(&self, signer: Option<&Signer>) -> Value {
        let (id, ts) = ("8a6b1c2d3e4f", "2024-07-10T09:43:44Z");
        let mut v = json!({
            "type": self.kind,
            "topic_urn": self.topic,
            "message_id": id,
            "message": self.message,
            "timestamp": ts,
            "signature_version": "v1",
        });
        if let Some(s) = self.subject {
            v["subject"] = json!(s);
        }
        if let Some(u) = &self.subscribe_url {
            v["subscribe_url"] = json!(u);
        }
        if let Some(u) = &self.cert_url {
            v["signing_cert_url"] = json!(u);
        }
        if let Some(signer) = signer {
            v["signature"] = json!(signer.sign(&self.canonical(id, ts)));
        }
        v
    }
}

/// The test RSA key (tests/data/webhook) and a self-signed certificate for it.
struct Signer {
    key: KeyPair,
    cert: String,
}

impl Signer {
    fn new() -> Signer {
        let pem = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data/webhook/smn-test-signing-key.pem"),
        )
        .unwrap();
        let key = KeyPair::from_pkcs8_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "SMN test signing");
        let cert = params.self_signed(&key).unwrap().pem();
        Signer { key, cert }
    }

    fn sign(&self, canonical: &str) -> String {
        let sig = self.key.sign(canonical.as_bytes()).unwrap();
        base64::engine::general_purpose::STANDARD.encode(sig)
    }
}

/// An HTTPS server on loopback standing in for SMN: serves the signing certificate
/// under `/smn/`, answers anything else 200, and records every path asked for.
struct SmnFake {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    /// The test CA's PEM file, for the exporter's `ca_file`.
    ca_file: PathBuf,
}

impl SmnFake {
    async fn start(dir: &Path, cert: String) -> SmnFake {
        init_tls();
        let ca = Ca::new("SMN fake CA");
        let server = ca.server();
        std::fs::write(dir.join("smn.crt"), &server.cert).unwrap();
        std::fs::write(dir.join("smn.key"), &server.key).unwrap();
        let web = dir.join("smn-web.yml");
        std::fs::write(
            &web,
            "tls_server_config:\n  cert_file: smn.crt\n  key_file: smn.key\n",
        )
        .unwrap();
        let ca_file = dir.join("smn-ca.pem");
        std::fs::write(&ca_file, &ca.pem).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let app = Router::new().fallback(move |uri: Uri| {
            let log = log.clone();
            let cert = cert.clone();
            async move {
                log.lock().unwrap().push(uri.path().to_string());
                if uri.path().starts_with("/smn/") {
                    (StatusCode::OK, cert)
                } else {
                    (StatusCode::OK, "confirmed".to_string())
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let options = ims_exporter::http::ServeOptions {
            web_config_file: Some(web),
            ..Default::default()
        };
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = rx.await;
            };
            let _ = ims_exporter::http::serve(vec![listener], app, options, shutdown).await;
        });
        SmnFake {
            addr,
            seen,
            stop: Some(tx),
            task,
            ca_file,
        }
    }

    /// The host to list in `smn_hosts`.
    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.addr.port())
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.host())
    }

    /// The same server under a name that is not allowed (the certificate covers it:
    /// a request there would be served, and seen).
    fn other_host_url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    fn seen(&self, path: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|p| *p == path)
            .count()
    }

    async fn wait_seen(&self, path: &str) {
        wait_for(&format!("a GET of {path}"), async || {
            (self.seen(path) > 0).then_some(())
        })
        .await;
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_body_shape_is_accepted_and_counted() {
    let fleet = webhook_fleet("rate_limit: 1000/s").await;
    let exporter = fleet.start(&["--log.level", "debug"]).await;
    let url = exporter.url(PATH);
    let smn = Smn::notification(trace("t-smn").to_string()).body(None);
    let shapes = [
        ("a bare trace", "application/json", trace("t-1")),
        (
            "FunctionGraph's CTS trigger",
            "application/json; charset=utf-8",
            json!({ "cts": trace("t-2") }),
        ),
        (
            "a CloudEvent",
            "application/cloudevents+json",
            json!({
                "specversion": "1.0", "id": "e-1", "source": "CTS",
                "type": "com.huaweicloud.cts.trace", "datacontenttype": "application/json",
                "time": "2024-07-10T09:43:44Z", "data": trace("t-3"),
            }),
        ),
        ("an SMN notification", "text/plain; charset=UTF-8", smn),
    ];
    for (what, content_type, body) in &shapes {
        let (status, answer) = post(&url, content_type, Some(TOKEN), body.to_string()).await;
        assert_eq!(status, 202, "{what}: {answer}");
        let answer: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(answer["status"], "accepted", "{what}");
    }
    // The token as a query parameter (an SMN subscription cannot set headers).
    let (status, answer) = post(
        &format!("{url}?token={TOKEN}"),
        "text/plain",
        None,
        trace("t-4").to_string(),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    // An unsubscribe confirmation is acknowledged, nothing more.
    let unsubscribe = json!({
        "type": "UnsubscribeConfirmation", "topic_urn": TOPIC, "message_id": "m-2",
        "message": "unsubscribed", "timestamp": "2024-07-10T09:43:44Z",
        "subscribe_url": "https://smn.cn-north-4.myhuaweicloud.com/smn/subscribe?x=1",
    });
    let (status, answer) = post_json(&exporter, &unsubscribe).await;
    assert_eq!(
        (status, answer.contains("acknowledged")),
        (200, true),
        "{answer}"
    );
    assert_eq!(counts(&exporter).await, expect_counts(&[("accepted", 6.0)]));
    assert!(
        !exporter.logs().contains(TOKEN),
        "the token appears in the logs"
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_have_their_status_and_their_result() {
    let fleet = webhook_fleet("rate_limit: 1000/s").await;
    let exporter = fleet.start(&["--log.level", "debug"]).await;
    let url = exporter.url(PATH);
    let body = trace("t-1").to_string();
    let wrong = "webhook-WRONG-00000000000000000000";
    for (what, token, query) in [
        ("no token", None, ""),
        ("a wrong bearer token", Some(wrong), ""),
        (
            "a wrong query token",
            None,
            "?token=webhook-WRONG-000000000000000",
        ),
        ("a prefix of the token", Some(&TOKEN[..10]), ""),
    ] {
        let r = client()
            .post(format!("{url}{query}"))
            .header(header::CONTENT_TYPE, "application/json");
        let r = match token {
            Some(t) => r.bearer_auth(t),
            None => r,
        };
        let r = r.body(body.clone()).send().await.unwrap();
        assert_eq!(r.status(), 401, "{what}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer", "{what}");
    }
    for content_type in ["application/x-www-form-urlencoded", "text/html"] {
        let (status, answer) = post(&url, content_type, Some(TOKEN), body.clone()).await;
        assert_eq!(status, 415, "{content_type}: {answer}");
        assert!(answer.contains("application/json"), "{answer}");
    }
    let secret = "ECHO-ME-NOT";
    for (what, body) in [
        ("an unknown shape", json!({ "hello": secret })),
        (
            "a CloudEvent without a trace",
            json!({"specversion": "1.0", "data": {"x": secret}}),
        ),
        ("a trace of the wrong type", json!({ "trace_id": [secret] })),
    ] {
        let (status, answer) = post_json(&exporter, &body).await;
        assert_eq!(status, 400, "{what}: {answer}");
        let error = serde_json::from_str::<Value>(&answer).unwrap()["error"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            !error.is_empty() && !error.contains(secret),
            "{what}: {error}"
        );
    }
    let (status, answer) = post(&url, "application/json", Some(TOKEN), "not json".into()).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("not JSON"), "{answer}");
    // Too large, announced by Content-Length: refused before the body is read.
    let big = format!(
        "{{\"trace_id\": \"t\", \"request\": \"{}\"}}",
        "x".repeat(MAX_BODY)
    );
    let (status, _) = post(&url, "application/json", Some(TOKEN), big.clone()).await;
    assert_eq!(status, 413);
    // Too large, chunked (no length announced): refused once the cap is passed.
    let status = post_chunked(&exporter.addr, &big).await;
    assert_eq!(status, 413);
    // Just under the cap is fine.
    let fits = format!(
        "{{\"trace_id\": \"t-fit\", \"request\": \"{}\"}}",
        "x".repeat(MAX_BODY - 64)
    );
    let (status, answer) = post(&url, "application/json", Some(TOKEN), fits).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(
        counts(&exporter).await,
        expect_counts(&[
            ("accepted", 1.0),
            ("unauthorized", 4.0),
            ("invalid", 6.0),
            ("too_large", 2.0),
        ])
    );
    // Other methods are not served.
    let r = client().get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let logs = exporter.logs();
    for needle in [TOKEN, secret, wrong] {
        assert!(!logs.contains(needle), "{needle} appears in the logs");
    }
    fleet.stop().await;
}

/// A chunked POST of `body` with the token over a raw connection; the status.
async fn post_chunked(addr: &str, body: &str) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {PATH} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for chunk in body.as_bytes().chunks(16 * 1024) {
        let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
        frame.extend_from_slice(chunk);
        frame.extend_from_slice(b"\r\n");
        // The server may answer and close before all of it is sent: that is the test.
        if stream.write_all(&frame).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {answer:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rate_limit_answers_429() {
    let fleet = webhook_fleet("rate_limit: 1/h").await;
    let exporter = fleet.start(&[]).await;
    let (status, answer) = post_json(&exporter, &trace("t-1")).await;
    assert_eq!(status, 202, "{answer}");
    for _ in 0..2 {
        let r = client()
            .post(exporter.url(PATH))
            .bearer_auth(TOKEN)
            .header(header::CONTENT_TYPE, "application/json")
            .body(trace("t-2").to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "1");
    }
    assert_eq!(
        counts(&exporter).await,
        expect_counts(&[("accepted", 1.0), ("throttled", 2.0)])
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_turns_the_route_on_changes_the_token_and_turns_it_off() {
    let fleet = fleet().await;
    let exporter = fleet.start(&[]).await;
    let (status, _) = post_json(&exporter, &trace("t-1")).await;
    assert_eq!(status, 404, "no events.webhook: no route");
    // On.
    let block = events_block(fleet.dir.path(), "rate_limit: 1000/s");
    fleet.rewrite(|c| c.config(&block));
    exporter.reload().await;
    let (status, answer) = post_json(&exporter, &trace("t-2")).await;
    assert_eq!(status, 202, "{answer}");
    // A new token: the old one is refused.
    let new_token = "webhook-NEW-TOKEN-0123456789abcdef";
    std::fs::write(fleet.dir.path().join("webhook-token"), new_token).unwrap();
    exporter.reload().await;
    let (status, _) = post_json(&exporter, &trace("t-3")).await;
    assert_eq!(status, 401);
    let (status, answer) = post(
        &exporter.url(PATH),
        "application/json",
        Some(new_token),
        trace("t-3").to_string(),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    // Off again.
    fleet.rewrite(|c| c.without("events"));
    exporter.reload().await;
    let (status, _) = post(
        &exporter.url(PATH),
        "application/json",
        Some(new_token),
        trace("t-4").to_string(),
    )
    .await;
    assert_eq!(status, 404);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_guards_the_metrics_but_not_the_webhook_and_tls_covers_both() {
    let fleet = webhook_fleet("rate_limit: 1000/s").await;
    let dir = fleet.dir.path();
    let ca = Ca::new("exporter CA");
    let server = ca.server();
    std::fs::write(dir.join("server.crt"), &server.cert).unwrap();
    std::fs::write(dir.join("server.key"), &server.key).unwrap();
    let hash = bcrypt::hash("prometheus-password", 4).unwrap();
    let web = dir.join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
             basic_auth_users:\n  prometheus: '{hash}'\n"
        ),
    )
    .unwrap();
    let exporter = fleet
        .start_unready(&["--web.config.file", web.to_str().unwrap()])
        .await;
    init_tls();
    let tls = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap()])
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let https = |path: &str| format!("https://{}{path}", exporter.addr);
    let r = tls.get(https("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 401, "basic auth still guards /metrics");
    let r = tls
        .post(https(PATH))
        .bearer_auth(TOKEN)
        .header(header::CONTENT_TYPE, "application/json")
        .body(trace("t-1").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "the webhook needs its token only");
    // Plain HTTP gets no answer: TLS applies to the webhook too.
    let plain = client()
        .post(exporter.url(PATH))
        .bearer_auth(TOKEN)
        .header(header::CONTENT_TYPE, "application/json")
        .body(trace("t-2").to_string())
        .send()
        .await;
    assert!(
        !plain.is_ok_and(|r| r.status().is_success()),
        "a plain-HTTP push was served"
    );
    let r = tls
        .get(https("/metrics"))
        .basic_auth("prometheus", Some("prometheus-password"))
        .send()
        .await
        .unwrap();
    let samples = parse_exposition(&r.text().await.unwrap());
    assert_eq!(
        value(
            &samples,
            "ims_webhook_requests_total",
            &[("result", "accepted")]
        ),
        Some(1.0)
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_smn_subscription_is_confirmed_only_for_an_allowed_host_and_topic() {
    let fleet = fleet().await;
    let smn = SmnFake::start(fleet.dir.path(), String::new()).await;
    let block = events_block(
        fleet.dir.path(),
        &format!(
            "rate_limit: 1000/s\nsmn_topics: ['{TOPIC}']\nsmn_hosts: ['{}']\nsmn_verify: false",
            smn.host()
        ),
    );
    let fleet = fleet
        .config(&block)
        .config(&format!("ca_file: {}", smn.ca_file.display()));
    let exporter = fleet.start(&[]).await;

    let confirm = Smn::confirmation(TOPIC, smn.url("/confirm/ok")).body(None);
    let (status, answer) = post_json(&exporter, &confirm).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("confirmed"), "{answer}");
    smn.wait_seen("/confirm/ok").await;

    let other_topic = Smn::confirmation(OTHER_TOPIC, smn.url("/confirm/topic")).body(None);
    let (status, answer) = post_json(&exporter, &other_topic).await;
    assert_eq!(status, 403, "{answer}");
    assert!(answer.contains("smn_topics"), "{answer}");

    let other_host = Smn::confirmation(TOPIC, smn.other_host_url("/confirm/host")).body(None);
    let (status, answer) = post_json(&exporter, &other_host).await;
    assert_eq!(status, 403, "{answer}");
    assert!(answer.contains("not allowed"), "{answer}");

    let plain_http =
        Smn::confirmation(TOPIC, format!("http://{}/confirm/http", smn.host())).body(None);
    let (status, _) = post_json(&exporter, &plain_http).await;
    assert_eq!(status, 403);

    // A confirmation's GET is made before the exporter answers, so the refused ones
    // would have been seen by now; one more allowed one shows the server still counts.
    let again = Smn::confirmation(TOPIC, smn.url("/confirm/again")).body(None);
    assert_eq!(post_json(&exporter, &again).await.0, 200);
    smn.wait_seen("/confirm/again").await;
    for path in ["/confirm/topic", "/confirm/host", "/confirm/http"] {
        assert_eq!(smn.seen(path), 0, "{path} was fetched");
    }
    assert_eq!(
        counts(&exporter).await,
        expect_counts(&[("accepted", 2.0), ("unverified", 3.0)])
    );
    fleet.stop().await;
    smn.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn smn_signatures_are_verified_with_the_certificate_of_an_allowed_host() {
    let signer = Signer::new();
    let fleet = fleet().await;
    let smn = SmnFake::start(fleet.dir.path(), signer.cert.clone()).await;
    // smn_verify is on by default with smn_topics.
    let block = events_block(
        fleet.dir.path(),
        &format!(
            "rate_limit: 1000/s\nsmn_topics: ['{TOPIC}']\nsmn_hosts: ['{}']",
            smn.host()
        ),
    );
    let fleet = fleet
        .config(&block)
        .config(&format!("ca_file: {}", smn.ca_file.display()));
    let exporter = fleet.start(&[]).await;
    let cert_url = smn.url("/smn/SMN_cn-north-4_test.pem");

    // Signed: accepted.
    let mut signed = Smn::notification(trace("t-signed").to_string());
    signed.cert_url = Some(cert_url.clone());
    let (status, answer) = post(
        &exporter.url(PATH),
        "text/plain; charset=UTF-8",
        Some(TOKEN),
        signed.body(Some(&signer)).to_string(),
    )
    .await;
    assert_eq!(status, 202, "{answer}");

    // Tampered after signing: refused.
    let mut tampered = signed.body(Some(&signer));
    tampered["message"] = json!(trace("t-forged").to_string());
    let (status, answer) = post_json(&exporter, &tampered).await;
    assert_eq!(status, 403, "{answer}");
    assert!(answer.contains("does not verify"), "{answer}");

    // Unsigned: refused.
    let (status, _) = post_json(&exporter, &signed.body(None)).await;
    assert_eq!(status, 403);

    // A certificate on a host that is not allowed is never fetched.
    let mut elsewhere = Smn::notification(trace("t-elsewhere").to_string());
    elsewhere.cert_url = Some(smn.other_host_url("/smn/elsewhere.pem"));
    let (status, answer) = post_json(&exporter, &elsewhere.body(Some(&signer))).await;
    assert_eq!(status, 403, "{answer}");
    assert!(answer.contains("not allowed"), "{answer}");

    // A signed confirmation is confirmed.
    let mut confirm = Smn::confirmation(TOPIC, smn.url("/confirm/signed"));
    confirm.cert_url = Some(cert_url.clone());
    let (status, answer) = post_json(&exporter, &confirm.body(Some(&signer))).await;
    assert_eq!(status, 200, "{answer}");
    smn.wait_seen("/confirm/signed").await;

    // A forged confirmation (its URL changed after signing) is not.
    let mut forged = confirm.body(Some(&signer));
    forged["subscribe_url"] = json!(smn.url("/confirm/forged"));
    let (status, _) = post_json(&exporter, &forged).await;
    assert_eq!(status, 403);

    assert_eq!(
        smn.seen("/smn/elsewhere.pem"),
        0,
        "a certificate on another host was fetched"
    );
    assert_eq!(
        smn.seen("/confirm/forged"),
        0,
        "a forged confirmation was followed"
    );
    assert_eq!(
        smn.seen("/smn/SMN_cn-north-4_test.pem"),
        1,
        "the certificate is cached"
    );
    assert_eq!(
        counts(&exporter).await,
        expect_counts(&[("accepted", 2.0), ("unverified", 4.0)])
    );
    fleet.stop().await;
    smn.stop().await;
}
