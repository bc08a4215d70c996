//! Real services for end-to-end tests: Prometheus (with rules and an Alertmanager),
//! Alertmanager, and a webhook receiver. Every process started here is killed when its
//! handle is dropped, so a failing test leaves nothing running.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::{init_tls, wait_for, KillOnDrop};

/// How long a command-line tool (promtool, the exporter with `--once`) may run.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// The first of `candidates` found on PATH.
pub fn find_tool(candidates: &[&str]) -> Option<String> {
    candidates
        .iter()
        .find(|tool| {
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(|t| t.to_string())
}

/// Like [`super::require_tool`] for a tool known under several names (Debian installs
/// Alertmanager as `prometheus-alertmanager`, upstream as `alertmanager`): the name
/// found, or `None` (and SKIPPED) — a failure under `CI=true`.
pub fn require_any_tool(candidates: &[&str]) -> Option<String> {
    let found = find_tool(candidates);
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "one of {candidates:?} is required under CI=true; run the README's test command, which installs it"
        );
        eprintln!(
            "SKIPPED: none of {candidates:?} installed (run the README's test command to install it)"
        );
    }
    found
}

/// A port that was free on 127.0.0.1 a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A server process on a loopback port, with its output in a log file.
pub struct Service {
    child: KillOnDrop,
    pub port: u16,
    log: PathBuf,
    /// Keeps its connections, so many API calls in a row stay cheap.
    client: reqwest::Client,
}

impl Service {
    /// Starts `program` with `args(port, attempt)` on a free loopback port and waits
    /// until `GET ready_path` answers 200. A port taken between picking and binding
    /// makes the process exit; then it retries on another port.
    pub async fn start(
        program: &str,
        dir: &Path,
        ready_path: &str,
        args: impl Fn(u16, usize) -> Vec<String>,
    ) -> Service {
        init_tls();
        let mut last_log = String::new();
        for attempt in 0..5 {
            let port = free_port();
            let log = dir.join(format!("{program}-{attempt}.log"));
            let log_file = std::fs::File::create(&log).expect("create log");
            let child = Command::new(program)
                .args(args(port, attempt))
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("log fd"))
                .stderr(log_file)
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
            let mut service = Service {
                child: KillOnDrop(child),
                port,
                log,
                client: reqwest::Client::new(),
            };
            let url = service.url(ready_path);
            let up = wait_for(&format!("{program} to be ready"), async || {
                if let Ok(Some(_)) = service.child.0.try_wait() {
                    return Some(false); // exited: most likely the port was taken
                }
                let ok = reqwest::get(&url).await.is_ok_and(|r| r.status() == 200);
                ok.then_some(true)
            })
            .await;
            // Ready, and still ours: not some other server that holds the port.
            if up && matches!(service.child.0.try_wait(), Ok(None)) {
                return service;
            }
            last_log = service.logs();
        }
        panic!("{program} did not start after 5 attempts; last log:\n{last_log}");
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn get_json(&self, path: &str) -> Value {
        let resp = self
            .client
            .get(self.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        resp.json()
            .await
            .unwrap_or_else(|e| panic!("JSON from {path}: {e}"))
    }
}

/// A real Prometheus server with its data in a directory of the test's.
pub struct Prometheus(pub Service);

impl Prometheus {
    /// Writes `config` (prometheus.yml) into `dir` and starts Prometheus with it.
    pub async fn start(dir: &Path, config: &str) -> Prometheus {
        let file = dir.join("prometheus.yml");
        std::fs::write(&file, config).expect("write prometheus.yml");
        Prometheus(
            Service::start("prometheus", dir, "/-/ready", |port, attempt| {
                vec![
                    format!("--config.file={}", file.display()),
                    format!(
                        "--storage.tsdb.path={}",
                        dir.join(format!("prometheus-data-{attempt}")).display()
                    ),
                    format!("--web.listen-address=127.0.0.1:{port}"),
                ]
            })
            .await,
        )
    }

    /// Prometheus scraping `targets` every second as job `job`, with no rules.
    pub async fn start_scraping(dir: &Path, job: &str, targets: &[&str]) -> Prometheus {
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        Prometheus::start(
            dir,
            &format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: {job}\n    static_configs:\n      - targets: [{}]\n",
                targets.join(", ")
            ),
        )
        .await
    }

    /// Prometheus scraping `targets` every second as job `job`, evaluating `rules`
    /// (written into `dir`) every second and sending alerts to `alertmanager`.
    pub async fn start_alerting(
        dir: &Path,
        rules: &str,
        alertmanager: &str,
        job: &str,
        targets: &[&str],
    ) -> Prometheus {
        let rules_file = dir.join("fast.rules.yml");
        std::fs::write(&rules_file, rules).expect("write the rules copy");
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        Prometheus::start(
            dir,
            &format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - '{}'\n\
                 alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{alertmanager}']\n\
                 scrape_configs:\n  - job_name: {job}\n    static_configs:\n      - targets: [{}]\n",
                rules_file.display(),
                targets.join(", ")
            ),
        )
        .await
    }

    pub fn logs(&self) -> String {
        self.0.logs()
    }

    /// The result vector of an instant query, or Prometheus's error.
    pub async fn try_query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let q: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("query", expr)
            .finish();
        let body = self.0.get_json(&format!("/api/v1/query?{q}")).await;
        if body["status"] != "success" {
            return Err(format!(
                "{}: {}",
                body["errorType"].as_str().unwrap_or("?"),
                body["error"].as_str().unwrap_or("?")
            ));
        }
        Ok(body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// The result vector of an instant query (panics on an API error).
    pub async fn query(&self, expr: &str) -> Vec<Value> {
        self.try_query(expr)
            .await
            .unwrap_or_else(|e| panic!("query {expr} failed: {e}"))
    }

    /// The value of a query that yields exactly one sample.
    pub async fn scalar(&self, expr: &str) -> Option<f64> {
        match self.query(expr).await.as_slice() {
            [one] => one["value"][1].as_str().and_then(|v| v.parse().ok()),
            _ => None,
        }
    }

    /// Alerts pending or firing now (`/api/v1/alerts`).
    pub async fn alerts(&self) -> Vec<Value> {
        let body = self.0.get_json("/api/v1/alerts").await;
        body["data"]["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Every loaded rule (`/api/v1/rules`), across groups.
    pub async fn rules(&self) -> Vec<Value> {
        let body = self.0.get_json("/api/v1/rules").await;
        body["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect()
    }
}

/// A real Alertmanager, clustering off, its state in a directory of the test's.
pub struct Alertmanager(pub Service);

impl Alertmanager {
    /// Writes `config` (alertmanager.yml) into `dir` and starts `binary` with it.
    pub async fn start(binary: &str, dir: &Path, config: &str) -> Alertmanager {
        let file = dir.join("alertmanager.yml");
        std::fs::write(&file, config).expect("write alertmanager.yml");
        Alertmanager(
            Service::start(binary, dir, "/-/ready", |port, attempt| {
                vec![
                    format!("--config.file={}", file.display()),
                    format!(
                        "--storage.path={}",
                        dir.join(format!("alertmanager-data-{attempt}")).display()
                    ),
                    format!("--web.listen-address=127.0.0.1:{port}"),
                    // Empty: no gossip listener, so nothing binds beyond loopback.
                    "--cluster.listen-address=".to_string(),
                ]
            })
            .await,
        )
    }
}

/// One alert as a webhook notification carried it.
#[derive(Debug, Clone)]
pub struct Notified {
    /// `firing` or `resolved`.
    pub status: String,
    pub labels: serde_json::Map<String, Value>,
    pub annotations: serde_json::Map<String, Value>,
}

impl Notified {
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).and_then(Value::as_str).unwrap_or("")
    }
}

/// An HTTP server on 127.0.0.1 that records every JSON body POSTed to `/alerts`, as
/// Alertmanager's webhook receiver sends them. Stopped when dropped.
pub struct Webhook {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Webhook {
    pub async fn start() -> Webhook {
        use axum::routing::post;
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        let app = axum::Router::new().route(
            "/alerts",
            post(move |body: String| {
                let sink = sink.clone();
                async move {
                    let value = serde_json::from_str(&body)
                        .unwrap_or_else(|e| Value::String(format!("not JSON ({e}): {body}")));
                    sink.lock().unwrap_or_else(|e| e.into_inner()).push(value);
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind webhook");
        let addr = listener.local_addr().expect("webhook addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Webhook {
            addr,
            received,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/alerts", self.addr)
    }

    /// Every notification body received so far.
    pub fn notifications(&self) -> Vec<Value> {
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Every alert of every notification received so far, in order.
    pub fn alerts(&self) -> Vec<Notified> {
        let object = |v: &Value| v.as_object().cloned().unwrap_or_default();
        self.notifications()
            .iter()
            .flat_map(|n| n["alerts"].as_array().cloned().unwrap_or_default())
            .map(|a| Notified {
                status: a["status"].as_str().unwrap_or("").to_string(),
                labels: object(&a["labels"]),
                annotations: object(&a["annotations"]),
            })
            .collect()
    }

    /// The first alert received with `status` and all of `labels`.
    pub fn find(&self, status: &str, labels: &[(&str, &str)]) -> Option<Notified> {
        self.find_since(0, status, labels)
    }

    /// Like [`Webhook::find`], among the alerts received after the first `from` (see
    /// [`Webhook::alerts`]`.len()`).
    pub fn find_since(
        &self,
        from: usize,
        status: &str,
        labels: &[(&str, &str)],
    ) -> Option<Notified> {
        self.alerts()
            .into_iter()
            .skip(from)
            .find(|a| a.status == status && labels.iter().all(|(k, v)| a.label(k) == *v))
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}
