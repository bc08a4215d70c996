//! [`Fleet`]: the setup most end-to-end tests repeat, built in one expression.
//!
//! ```ignore
//! let fleet = Fleet::new().await.shared(&[IMG]).images(&[IMG]).config("page_size: 10");
//! let fake = &fleet.fake;
//! let exporter = fleet.start(&["--web.enable-lifecycle"]).await; // and ready
//! // ... scrape, assert ...
//! fleet.stop().await;
//! ```
//!
//! The fleet owns the fake IMS and the directory of the config file; the tests own
//! what they start from it, so both live as long as the test needs them.

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use ims_exporter::fake_ims::FakeIms;

use super::{command, run_tool, share_accepted, start_fake, Exporter, AK, PROJECT, REGION, SK};

/// Top-level keys every fleet config has unless [`Fleet::config`] sets them: a fast
/// schedule, and a timeout that fails a hung call well within a test's deadline.
const DEFAULTS: [(&str, &str); 2] = [("poll_interval", "1s"), ("request_timeout", "5s")];

/// A fake IMS with the test account, and a config for it being built.
pub struct Fleet {
    pub fake: FakeIms,
    /// Where the config file (and anything a test puts next to it) lives.
    pub dir: tempfile::TempDir,
    top: Vec<String>,
    credentials: Option<String>,
    target_keys: String,
    /// Images of the test project: (ID, extra keys).
    images: Vec<(String, String)>,
    /// Further targets in the test region at the same fake: (project, image IDs).
    targets: Vec<(String, Vec<String>)>,
    envs: Vec<(String, String)>,
}

impl Fleet {
    /// Starts the fake IMS with the test account ([`start_fake`]). The config so far:
    /// the test credentials, and one target, the test project at the fake, with no
    /// images yet.
    pub async fn new() -> Fleet {
        Fleet {
            fake: start_fake().await,
            dir: tempfile::tempdir().expect("temporary directory"),
            top: Vec::new(),
            credentials: Some(format!("access_key_id: {AK}\nsecret_access_key: {SK}")),
            target_keys: String::new(),
            images: Vec::new(),
            targets: Vec::new(),
            envs: Vec::new(),
        }
    }

    /// Shares each of `images` of the test project with one project that accepted
    /// ([`share_accepted`]), in the fake.
    pub fn shared(self, images: &[impl AsRef<str>]) -> Self {
        for image in images {
            share_accepted(&self.fake.state, PROJECT, image.as_ref());
        }
        self
    }

    /// Lists `images` in the test project's target.
    pub fn images(mut self, images: &[impl AsRef<str>]) -> Self {
        self.images.extend(
            images
                .iter()
                .map(|i| (i.as_ref().to_string(), String::new())),
        );
        self
    }

    /// Lists `image` in the test project's target with `keys` (YAML, unindented:
    /// `watch_members: [...]`).
    pub fn image(mut self, image: &str, keys: &str) -> Self {
        self.images.push((image.to_string(), keys.to_string()));
        self
    }

    /// Adds `keys` (YAML, unindented: `discover: ...`) to the test project's target.
    pub fn target_keys(mut self, keys: &str) -> Self {
        self.target_keys.push_str(keys);
        self.target_keys.push('\n');
        self
    }

    /// Adds a target for `project` in the test region, at the fake, listing `images`.
    pub fn target(mut self, project: &str, images: &[impl AsRef<str>]) -> Self {
        let images = images.iter().map(|i| i.as_ref().to_string()).collect();
        self.targets.push((project.to_string(), images));
        self
    }

    /// Adds top-level `keys` (YAML). A key of [`DEFAULTS`] set here replaces the default.
    pub fn config(mut self, keys: &str) -> Self {
        self.top.extend(keys.lines().map(str::to_string));
        self
    }

    /// Replaces the top-level `credentials:` block with `block` (YAML, unindented).
    pub fn credentials(mut self, block: &str) -> Self {
        self.credentials = Some(block.to_string());
        self
    }

    /// No top-level `credentials:` block (the exporter looks further down its chain).
    pub fn no_credentials(mut self) -> Self {
        self.credentials = None;
        self
    }

    /// Sets an environment variable for the exporters the fleet starts.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.to_string(), value.to_string()));
        self
    }

    /// Where [`Fleet::write_config`] writes (the same file as [`super::write_config`]
    /// with the fleet's directory).
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    /// The config file's text.
    pub fn config_text(&self) -> String {
        let mut text = String::new();
        for (key, value) in DEFAULTS {
            let prefix = format!("{key}:");
            if !self.top.iter().any(|l| l.starts_with(&prefix)) {
                text.push_str(&format!("{key}: {value}\n"));
            }
        }
        for line in &self.top {
            text.push_str(line);
            text.push('\n');
        }
        if let Some(block) = &self.credentials {
            text.push_str("credentials:\n");
            text.push_str(&indent(block, 2));
        }
        let endpoint = self.fake.endpoint();
        text.push_str(&format!(
            "targets:\n  - region: {REGION}\n    project_id: {PROJECT}\n    endpoint: {endpoint}\n"
        ));
        text.push_str(&indent(&self.target_keys, 4));
        if !self.images.is_empty() {
            text.push_str("    images:\n");
        }
        for (id, keys) in &self.images {
            text.push_str(&format!("      - id: {id}\n"));
            text.push_str(&indent(keys, 8));
        }
        for (project, images) in &self.targets {
            text.push_str(&format!(
                "  - region: {REGION}\n    project_id: {project}\n    endpoint: {endpoint}\n    images:\n"
            ));
            for id in images {
                text.push_str(&format!("      - id: {id}\n"));
            }
        }
        text
    }

    /// Writes the config file; returns its path.
    pub fn write_config(&self) -> PathBuf {
        let path = self.config_path();
        std::fs::write(&path, self.config_text()).expect("write config");
        path
    }

    /// Writes the config and starts the exporter on it with `args` (and the fleet's
    /// environment); returns once it is ready (a first poll cycle ended).
    pub async fn start(&self, args: &[&str]) -> Exporter {
        let exporter = self.start_unready(args).await;
        exporter.wait_ready().await;
        exporter
    }

    /// [`Fleet::start`] without waiting for readiness: returns once it listens.
    pub async fn start_unready(&self, args: &[&str]) -> Exporter {
        let config = self.write_config();
        let mut all = vec!["--config.file", config.to_str().expect("UTF-8 path")];
        all.extend_from_slice(args);
        let envs: Vec<(&str, &str)> = self
            .envs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        Exporter::start(&all, &envs).await
    }

    /// Writes the config and runs `ims-exporter --once` on it with `args`.
    pub async fn run_once(&self, args: &[&str]) -> Output {
        let config = self.write_config();
        let mut cmd = command();
        cmd.arg("--once")
            .args(args)
            .arg("--config.file")
            .arg(&config);
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        run_tool(cmd, None, Duration::from_secs(60)).await
    }

    /// Stops the fake IMS.
    pub async fn stop(self) {
        self.fake.stop().await;
    }
}

/// `text`'s lines, each indented by `n` spaces.
fn indent(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("{pad}{l}\n"))
        .collect()
}
