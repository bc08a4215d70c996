//! The exporter under test as a child process: finding its binary, starting it,
//! draining its log (listening address, warnings, state writes), and the temporary
//! directory that holds its config and state.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use crate::args::Args;

/// How long the exporter may take to say where it listens.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The last lines of the exporter's stderr and what was found in them.
#[derive(Default)]
pub(crate) struct LogSink {
    tail: VecDeque<String>,
    pub(crate) lines: u64,
    warnings: u64,
    pub(crate) first_warnings: Vec<String>,
    address: Option<String>,
    /// (bytes, seconds) of each state write (`--state`).
    pub(crate) state_writes: Vec<(f64, f64)>,
}

/// `bytes` and `seconds` of a "state written" log line.
fn state_write(line: &str) -> Option<(f64, f64)> {
    if !line.contains("state written") {
        return None;
    }
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(k))
            .and_then(|v| v.parse::<f64>().ok())
    };
    Some((field("bytes=")?, field("seconds=")?))
}

/// The exporter, running; killed when dropped.
pub(crate) struct Exporter {
    child: Child,
    logs: Arc<Mutex<LogSink>>,
    pub(crate) addr: String,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn listening_address(line: &str) -> Option<String> {
    if !line.contains("listening") {
        return None;
    }
    // logfmt (`address=…`) or JSON (`"address":"…"`).
    serde_json::from_str::<serde_json::Value>(line)
        .ok()
        .and_then(|v| v["address"].as_str().map(str::to_string))
        .or_else(|| {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix("address="))
                .map(|a| a.trim_matches('"').to_string())
        })
}

/// Whether an exporter log line (logfmt or JSON) is a warning or an error.
fn is_warning(line: &str) -> bool {
    line.contains("level=warn")
        || line.contains("level=error")
        || line.contains("\"level\":\"WARN")
        || line.contains("\"level\":\"ERROR")
}

impl LogSink {
    /// Takes in one line of the exporter's stderr.
    fn record(&mut self, line: String) {
        self.lines += 1;
        if self.address.is_none() {
            self.address = listening_address(&line);
        }
        if let Some(w) = state_write(&line) {
            self.state_writes.push(w);
        }
        if is_warning(&line) {
            self.warnings += 1;
            if self.first_warnings.len() < 5 {
                self.first_warnings.push(line.clone());
            }
        }
        self.tail.push_back(line);
        if self.tail.len() > 40 {
            self.tail.pop_front();
        }
    }
}

/// The exporter's command line: `config`, `state` as `--storage.path`, a free port,
/// and no credentials from the environment.
fn command(bin: &Path, config: &Path, state: Option<&Path>) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg("--config.file").arg(config);
    match state {
        // Debug: the state writes are logged with their size and time.
        Some(dir) => cmd
            .arg("--storage.path")
            .arg(dir)
            .args(["--log.level", "debug"]),
        None => cmd.args(["--log.level", "info"]),
    };
    cmd.args(["--web.listen-address", "127.0.0.1:0"])
        .env_remove("HUAWEICLOUD_SDK_AK")
        .env_remove("HUAWEICLOUD_SDK_SK")
        .env_remove("HUAWEICLOUD_SDK_SECURITY_TOKEN")
        .env(
            "HUAWEICLOUD_SDK_CREDENTIALS_FILE",
            "/nonexistent/ims-bench-credentials",
        );
    cmd
}

/// Reads the exporter's stderr into `sink` on a thread of its own, until it closes.
fn drain_log(stderr: ChildStderr, sink: Arc<Mutex<LogSink>>) {
    // Drained all the time, so the exporter never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            lock(&sink).record(line);
        }
    });
}

impl Exporter {
    pub(crate) async fn start(
        bin: &Path,
        config: &Path,
        state: Option<&Path>,
    ) -> Result<Exporter, String> {
        Exporter::spawn(command(bin, config, state), bin).await
    }

    /// Starts `cmd` (an exporter that logs `listening … address=HOST:PORT` on stderr).
    pub(crate) async fn spawn(mut cmd: Command, what: &Path) -> Result<Exporter, String> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", what.display()))?;
        let logs = Arc::new(Mutex::new(LogSink::default()));
        if let Some(stderr) = child.stderr.take() {
            drain_log(stderr, logs.clone());
        }
        let mut exporter = Exporter {
            child,
            logs,
            addr: String::new(),
        };
        exporter.wait_listening().await?;
        Ok(exporter)
    }

    /// Waits until the exporter logs where it listens and keeps that address; `Err`
    /// if it exits first or takes longer than [`STARTUP_TIMEOUT`].
    async fn wait_listening(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            self.check_alive()?;
            let address = lock(&self.logs).address.clone();
            if let Some(a) = address {
                self.addr = a;
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the exporter did not say where it listens within {STARTUP_TIMEOUT:?}; its log:\n{}",
                    self.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the log reader has found so far; the reader waits while this is held.
    pub(crate) fn logs(&self) -> MutexGuard<'_, LogSink> {
        lock(&self.logs)
    }

    pub(crate) fn log_tail(&self) -> String {
        let logs = lock(&self.logs);
        logs.tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// `Err` with the exporter's last words if it has exited.
    pub(crate) fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                // Let the reader thread catch up with the last lines.
                std::thread::sleep(Duration::from_millis(100));
                Err(format!(
                    "the exporter exited ({status}); if it refused the config, it says why:\n{}",
                    self.log_tail()
                ))
            }
            Err(e) => Err(format!("cannot check on the exporter: {e}")),
        }
    }

    /// Kills the exporter (SIGKILL) and reaps it; also done when it is dropped.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A directory under the system's temp dir, removed when dropped.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> Result<TempDir, String> {
        let tag: String = tag
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let path = std::env::temp_dir().join(format!("ims-bench-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(TempDir(path))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The exporter binary: `--exporter`, else `ims-exporter` next to this binary.
pub(crate) fn exporter_binary(args: &Args) -> Result<PathBuf, String> {
    let path = match &args.exporter {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(|e| format!("cannot find my own path: {e}"))?
            .with_file_name("ims-exporter"),
    };
    if !path.is_file() {
        return Err(format!(
            "{} not found: build the exporter first with `cargo build --release --bins`",
            path.display()
        ));
    }
    if path.parent().and_then(|p| p.file_name()) == Some("debug".as_ref()) {
        eprintln!(
            "WARNING: {} is a debug build; numbers are meaningless. Use `cargo build --release --bins` and `cargo run --release --bin ims-bench`.",
            path.display()
        );
    }
    if let (Some(built), Some(newest)) = (
        std::fs::metadata(&path).and_then(|m| m.modified()).ok(),
        newest_source(Path::new(env!("CARGO_MANIFEST_DIR"))),
    ) {
        if newest > built {
            eprintln!(
                "WARNING: {} is older than the sources; run `cargo build --release --bins` to benchmark the current code.",
                path.display()
            );
        }
    }
    Ok(path)
}

/// The newest modification time of the exporter's sources (not this benchmark's).
fn newest_source(root: &Path) -> Option<SystemTime> {
    fn walk(dir: &Path, newest: &mut Option<SystemTime>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name() != Some("bin".as_ref()) {
                    walk(&p, newest);
                }
            } else if p.extension() == Some("rs".as_ref()) {
                if let Ok(t) = e.metadata().and_then(|m| m.modified()) {
                    *newest = Some(newest.map_or(t, |n: SystemTime| n.max(t)));
                }
            }
        }
    }
    let mut newest = None;
    walk(&root.join("src"), &mut newest);
    newest
}
