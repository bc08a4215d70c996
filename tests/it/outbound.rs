//! Outbound connections as a locked-down network needs them: a private CA (the fake
//! IMS over TLS with a generated certificate), `insecure_skip_verify`, and an HTTPS
//! proxy (a loopback CONNECT proxy) with `NO_PROXY`.

use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::support::pki::Ca;
use crate::support::*;
use ims_exporter::fake_ims::{FakeIms, FakeState};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const IMG: &str = "d164b5df-1bc3-4c3f-893e-3e471fd16e64";

/// A fleet of the fake IMS over TLS with a certificate for 127.0.0.1 signed by a new CA
/// (its files in `dir`), listing `IMG`; returns the fleet and the CA's PEM file.
async fn tls_fleet(dir: &Path) -> (Fleet, std::path::PathBuf) {
    init_tls();
    let ca = Ca::new("private test CA");
    let server = ca.server();
    std::fs::write(dir.join("server.crt"), &server.cert).unwrap();
    std::fs::write(dir.join("server.key"), &server.key).unwrap();
    let web = dir.join("fake-web.yml");
    std::fs::write(
        &web,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
    )
    .unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let state = FakeState::default();
    state.add_account(AK, SK, None);
    share(&state, PROJECT, IMG, MEMBER, "accepted");
    let fake = FakeIms::start_tls(state, web).await.unwrap();
    assert!(fake.endpoint().starts_with("https://127.0.0.1:"));
    (Fleet::with_fake(fake).images(&[IMG]), ca_file)
}

/// A CONNECT proxy on 127.0.0.1 that records the targets it was asked for.
struct Proxy {
    addr: String,
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let mut client = BufReader::new(client);
                    let mut request = String::new();
                    if client.read_line(&mut request).await.is_err() {
                        return;
                    }
                    // Skip the headers.
                    loop {
                        let mut line = String::new();
                        match client.read_line(&mut line).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == "\r\n" => break,
                            Ok(_) => {}
                        }
                    }
                    let mut parts = request.split_whitespace();
                    let (Some("CONNECT"), Some(target)) = (parts.next(), parts.next()) else {
                        let _ = client
                            .get_mut()
                            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
                            .await;
                        return;
                    };
                    log.lock().unwrap().push(target.to_string());
                    let Ok(mut upstream) = TcpStream::connect(target).await else {
                        return;
                    };
                    let mut client = client.into_inner();
                    if client
                        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        .await
                        .is_ok()
                    {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                });
            }
        });
        Proxy { addr, seen, task }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn first_poll(cfg: &Path, envs: &[(&str, &str)]) -> (Option<f64>, Exporter) {
    let exporter = Exporter::start(&["--config.file", cfg.to_str().unwrap()], envs).await;
    exporter.wait_ready().await;
    let s = exporter.scrape_samples().await;
    (
        value(&s, "ims_image_poll_success", &[("image_id", IMG)]),
        exporter,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_private_ca_is_trusted_only_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let (fleet, ca_file) = tls_fleet(dir.path()).await;

    // The system roots do not know the private CA.
    let cfg = fleet.write_config();
    let (ok, exporter) = first_poll(&cfg, &[]).await;
    assert_eq!(ok, Some(0.0), "{}", exporter.logs());
    let s = exporter.scrape_samples().await;
    let connect = value(
        &s,
        "ims_image_poll_errors_total",
        &[("image_id", IMG), ("reason", "connect")],
    );
    assert!(
        connect.is_some_and(|n| n >= 1.0),
        "{connect:?}: {}",
        exporter.logs()
    );
    drop(exporter);

    let cfg = fleet.rewrite(|c| c.config(&format!("ca_file: {}", ca_file.display())));
    let (ok, exporter) = first_poll(&cfg, &[]).await;
    assert_eq!(ok, Some(1.0), "{}", exporter.logs());
    drop(exporter);

    let cfg = fleet.rewrite(|c| c.without("ca_file").config("insecure_skip_verify: true"));
    let (ok, exporter) = first_poll(&cfg, &[]).await;
    assert_eq!(ok, Some(1.0), "{}", exporter.logs());
    assert!(
        exporter.logs().contains("certificates are NOT verified"),
        "a loud warning"
    );
    drop(exporter);

    // A file that is not a CA is refused at start.
    std::fs::write(dir.path().join("bad.pem"), "not a certificate").unwrap();
    let cfg = fleet.rewrite(|c| {
        c.without("insecure_skip_verify").config(&format!(
            "ca_file: {}",
            dir.path().join("bad.pem").display()
        ))
    });
    let out = std::process::Command::new(bin())
        .args(["--config.file", cfg.to_str().unwrap(), "--config.check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ca_file"));
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn https_goes_through_the_proxy_unless_no_proxy_says_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let (fleet, ca_file) = tls_fleet(dir.path()).await;
    let fake = &fleet.fake;
    let proxy = Proxy::start().await;
    let proxy_url = format!("http://{}", proxy.addr);
    let cfg = fleet.rewrite(|c| c.config(&format!("ca_file: {}", ca_file.display())));

    let (ok, exporter) = first_poll(
        &cfg,
        &[
            ("HTTPS_PROXY", &proxy_url),
            ("NO_PROXY", ""),
            ("no_proxy", ""),
        ],
    )
    .await;
    assert_eq!(ok, Some(1.0), "{}", exporter.logs());
    let seen = proxy.seen.lock().unwrap().clone();
    assert!(
        seen.contains(&fake.addr().to_string()),
        "the proxy carried the API calls: {seen:?}"
    );
    drop(exporter);

    proxy.seen.lock().unwrap().clear();
    let (ok, exporter) = first_poll(
        &cfg,
        &[("HTTPS_PROXY", &proxy_url), ("NO_PROXY", "127.0.0.1")],
    )
    .await;
    assert_eq!(ok, Some(1.0), "{}", exporter.logs());
    assert!(
        proxy.seen.lock().unwrap().is_empty(),
        "NO_PROXY bypasses the proxy"
    );
    drop(exporter);
    fleet.stop().await;
}
