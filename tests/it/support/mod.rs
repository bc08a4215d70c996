//! Helpers shared by the end-to-end tests: start the real binary against a fake IMS on
//! loopback, scrape it, parse the exposition, and poll for conditions with a deadline.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ims_exporter::fake_ims::{FakeIms, FakeState};

pub const PROJECT: &str = "1bed856811654c1cb661a6ca845ebc77";
pub const AK: &str = "AKTESTEXAMPLE000";
pub const SK: &str = "SKTESTEXAMPLE0000000000000000000000000000";
pub const REGION: &str = "cn-north-4";

/// How long any wait in a test may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ims-exporter")
}

/// The binary, with no credentials from the environment and never the developer's
/// own `~/.huaweicloud/credentials`.
pub fn command() -> Command {
    let mut cmd = Command::new(bin());
    cmd.env_remove("HUAWEICLOUD_SDK_AK")
        .env_remove("HUAWEICLOUD_SDK_SK")
        .env_remove("HUAWEICLOUD_SDK_SECURITY_TOKEN")
        .env(
            "HUAWEICLOUD_SDK_CREDENTIALS_FILE",
            "/nonexistent/ims-exporter-test-credentials",
        );
    cmd
}

/// Polls `check` until it returns `Some`, or panics with `what` after [`DEADLINE`].
pub async fn wait_for<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// reqwest here has no built-in TLS provider; tests' own clients need one installed.
pub fn init_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A fake IMS with the test account.
pub async fn start_fake() -> FakeIms {
    init_tls();
    let state = FakeState::default();
    state.add_account(AK, SK, None);
    FakeIms::start(state).await.expect("start fake IMS")
}

/// The project most fixtures share their images with (and allowlist, where that
/// matters).
pub const MEMBER: &str = "edc89b490d7d4392898e19b2deb34797";

/// When a [`Share`] was created and last updated unless it says otherwise.
pub const SHARED_AT: &str = "2025-01-01T00:00:00Z";

/// Member `i`'s ID: `i` as 32 hex digits, a project no allowlist names.
pub fn member_id(i: usize) -> String {
    format!("{i:032x}")
}

/// Shares `image` of `project` with the project `member`, in `status`, since
/// [`SHARED_AT`]: the share most tests need ([`Share`] for any other).
pub fn share(fake: &impl Fake, project: &str, image: &str, member: &str, status: &str) {
    Share::new(project, image, member).status(status).put(fake);
}

/// One member of an image, for [`Share::put`] into a fake: by default a project, that
/// accepted, created and updated at [`SHARED_AT`].
pub struct Share {
    project: String,
    image: String,
    member: String,
    kind: String,
    status: String,
    created: String,
    updated: String,
    urn: Option<String>,
}

impl Share {
    pub fn new(project: &str, image: &str, member: &str) -> Share {
        Share {
            project: project.to_string(),
            image: image.to_string(),
            member: member.to_string(),
            kind: "project".to_string(),
            status: "accepted".to_string(),
            created: SHARED_AT.to_string(),
            updated: SHARED_AT.to_string(),
            urn: None,
        }
    }

    /// `accepted`, `pending` or `rejected`.
    pub fn status(mut self, status: &str) -> Self {
        self.status = status.to_string();
        self
    }

    /// `project`, `domain` or `organization` (with [`Share::urn`]).
    pub fn kind(mut self, kind: &str) -> Self {
        self.kind = kind.to_string();
        self
    }

    /// An organization member's URN.
    pub fn urn(mut self, urn: &str) -> Self {
        self.urn = Some(urn.to_string());
        self
    }

    /// Created and last updated at `time` (RFC 3339).
    pub fn created(mut self, time: &str) -> Self {
        self.created = time.to_string();
        self.updated = time.to_string();
        self
    }

    /// Last updated at `time` (RFC 3339).
    pub fn updated(mut self, time: &str) -> Self {
        self.updated = time.to_string();
        self
    }

    /// Puts the share into the fake, replacing one with the same member.
    pub fn put(self, fake: &impl Fake) {
        let member = ims_exporter::fake_ims::member(
            &self.image,
            &self.member,
            &self.kind,
            &self.status,
            &self.created,
            &self.updated,
            self.urn.as_deref(),
        );
        fake.fake_state().put_member(&self.project, member);
    }
}

/// A fake IMS, running or (its state) not started yet: where a [`Share`] goes.
pub trait Fake {
    fn fake_state(&self) -> &FakeState;
}

impl Fake for FakeIms {
    fn fake_state(&self) -> &FakeState {
        &self.state
    }
}

impl Fake for FakeState {
    fn fake_state(&self) -> &FakeState {
        self
    }
}

/// The real binary, running. Killed when dropped, so no test leaves it behind.
pub struct Exporter {
    child: Child,
    pub addr: String,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Exporter {
    /// Starts `ims-exporter` with `args` (plus a loopback listen address) and waits
    /// until it says where it listens.
    pub async fn start(args: &[&str], envs: &[(&str, &str)]) -> Exporter {
        Self::start_on("127.0.0.1:0", args, envs).await
    }

    /// [`Exporter::start`] on a given listen address (a restart on the same port).
    pub async fn start_on(listen: &str, args: &[&str], envs: &[(&str, &str)]) -> Exporter {
        init_tls();
        let mut cmd = command();
        cmd.args(args)
            .args(["--web.listen-address", listen])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn ims-exporter");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut exporter = Exporter {
            child,
            addr: String::new(),
            logs,
        };
        let addr = wait_for("the exporter to listen", async || {
            if let Ok(Some(status)) = exporter.child.try_wait() {
                panic!("exporter exited early with {status}:\n{}", exporter.logs());
            }
            exporter.logs.lock().unwrap().iter().find_map(|l| {
                if !l.contains("listening") {
                    return None;
                }
                // logfmt (`address=…`) or JSON (`"address":"…"`).
                let json = serde_json::from_str::<serde_json::Value>(l).ok();
                json.and_then(|v| v["address"].as_str().map(str::to_string))
                    .or_else(|| {
                        l.split_whitespace()
                            .find_map(|f| f.strip_prefix("address="))
                            .map(str::to_string)
                    })
            })
        })
        .await;
        exporter.addr = addr;
        exporter
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    pub fn log_lines(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        reqwest::get(self.url(path))
            .await
            .expect("GET from exporter")
    }

    pub async fn scrape(&self) -> String {
        self.get("/metrics")
            .await
            .text()
            .await
            .expect("metrics body")
    }

    pub async fn scrape_samples(&self) -> Vec<Sample> {
        parse_exposition(&self.scrape().await)
    }

    pub async fn wait_ready(&self) {
        wait_for("readiness", async || {
            (self.get("/-/ready").await.status() == 200).then_some(())
        })
        .await;
    }

    /// Sends SIGHUP (reload the config).
    pub fn hangup(&self) {
        signal(self.child.id(), "-HUP");
    }

    /// Sends SIGHUP and waits until the exporter took the config: the time of its
    /// last taken config load (`ims_exporter_config_last_reload_success_timestamp_seconds`)
    /// moves on.
    pub async fn reload(&self) {
        let loaded = async || {
            let s = self.scrape_samples().await;
            value(
                &s,
                "ims_exporter_config_last_reload_success_timestamp_seconds",
                &[],
            )
        };
        let before = loaded().await.expect("the time of the last config load");
        self.hangup();
        wait_for("the reload", async || {
            (loaded().await? > before).then_some(())
        })
        .await;
    }

    /// Sends SIGTERM and waits for the exit status.
    pub async fn terminate(mut self) -> ExitStatus {
        signal(self.child.id(), "-TERM");
        wait_for("the exporter to exit", async || {
            self.child.try_wait().expect("try_wait")
        })
        .await
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One sample of the text exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, k: &str) -> &str {
        self.labels.get(k).map(String::as_str).unwrap_or("")
    }
}

/// A small parser of the text format, enough for assertions (handles escapes).
pub fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (name_end, mut labels) = match line.find('{') {
            Some(i) => (i, BTreeMap::new()),
            None => (line.find(' ').expect("sample has a value"), BTreeMap::new()),
        };
        let name = line[..name_end].to_string();
        let mut rest = &line[name_end..];
        if rest.starts_with('{') {
            let mut chars = rest[1..].char_indices();
            let mut key = String::new();
            let end;
            loop {
                let Some((i, c)) = chars.next() else {
                    panic!("unterminated labels: {line}")
                };
                match c {
                    '}' => {
                        end = i + 2;
                        break;
                    }
                    ',' => continue,
                    '=' => {
                        let mut value = String::new();
                        chars.next(); // opening quote
                        while let Some((_, c)) = chars.next() {
                            match c {
                                '\\' => match chars.next().map(|(_, c)| c) {
                                    Some('n') => value.push('\n'),
                                    Some(c) => value.push(c),
                                    None => {}
                                },
                                '"' => break,
                                c => value.push(c),
                            }
                        }
                        labels.insert(std::mem::take(&mut key), value);
                    }
                    c => key.push(c),
                }
            }
            rest = &rest[end..];
        }
        let value = rest.split_whitespace().next().expect("value");
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        out.push(Sample {
            name,
            labels,
            value,
        });
    }
    out
}

/// Samples named `name` whose labels include all of `labels`.
pub fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == *v))
        .collect()
}

/// The value of the one sample named `name` with `labels`, if there is exactly one.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    match find(samples, name, labels).as_slice() {
        [s] => Some(s.value),
        _ => None,
    }
}

/// Sends `sig` (`-HUP`, `-TERM`, …) to process `pid` with kill(1).
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(ok.success(), "kill {sig} {pid}");
}

/// Whether a tool the tests need is on PATH; under CI=true its absence is a failure.
pub fn require_tool(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{tool} is required under CI=true; run the README's test command, which installs it"
        );
        eprintln!("SKIPPED: {tool} not installed (run the README's test command to install it)");
    }
    found
}

/// Kills the child when dropped, so a failing test leaves nothing running.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `cmd` to completion off the async runtime (which keeps serving fakes), with
/// `input` on stdin, and returns its output; panics if it runs past `timeout`.
pub async fn run_tool(mut cmd: Command, input: Option<String>, timeout: Duration) -> Output {
    tokio::task::spawn_blocking(move || {
        let stdin = if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        };
        let child = cmd
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let mut child = KillOnDrop(child);
        let writer = child.0.stdin.take().zip(input).map(|(mut stdin, input)| {
            // The tool may stop reading early (e.g. on a parse error); that is its answer.
            std::thread::spawn(move || {
                let _ = stdin.write_all(input.as_bytes());
            })
        });
        // Drain both pipes on their own threads so a chatty child cannot block on a full pipe.
        let drain = |mut r: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = r.read_to_end(&mut buf);
                buf
            })
        };
        let stdout = drain(Box::new(child.0.stdout.take().expect("stdout")));
        let stderr = drain(Box::new(child.0.stderr.take().expect("stderr")));
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.0.try_wait().expect("try_wait") {
                break status;
            }
            assert!(
                start.elapsed() < timeout,
                "{cmd:?} did not finish within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        if let Some(w) = writer {
            let _ = w.join();
        }
        Output {
            status,
            stdout: stdout.join().expect("stdout reader"),
            stderr: stderr.join().expect("stderr reader"),
        }
    })
    .await
    .expect("tool runner task")
}

/// A tool's exit status and output, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "exit: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The repeated setup: a fake IMS, images shared, a config, the exporter started.
pub mod fleet;
pub use fleet::{Config, Fleet, Target, UNREACHABLE};

/// Real Prometheus, Alertmanager and a webhook receiver, for the observability tests.
pub mod services;

/// The shipped dashboards' queries, for tests that run them.
pub mod dashboards;

/// A CA and certificates for TLS tests.
pub mod pki;

/// Shortened copies of the shipped alert rules.
pub mod rules;
