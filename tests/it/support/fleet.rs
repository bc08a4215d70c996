//! [`Fleet`]: the setup most end-to-end tests repeat, built in one expression; and
//! [`Config`], the one way a test writes an exporter config file.
//!
//! ```ignore
//! let fleet = Fleet::new().await.shared(&[IMG]).images(&[IMG]).config("page_size: 10");
//! let fake = &fleet.fake;
//! let exporter = fleet.start(&["--web.enable-lifecycle"]).await; // and ready
//! // ... scrape, assert ...
//! fleet.rewrite(|c| c.no_images().images(&[OTHER])); // then reload
//! fleet.stop().await;
//! ```
//!
//! The fleet owns the fake IMS and the directory of the config file; the tests own
//! what they start from it, so both live as long as the test needs them. A test whose
//! exporter needs no fake (a config check, an endpoint nobody answers) builds a
//! [`Config`] alone.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Mutex;
use std::time::Duration;

use ims_exporter::fake_ims::FakeIms;

use super::{command, run_tool, share, start_fake, Exporter, AK, MEMBER, PROJECT, REGION, SK};

/// An endpoint where nothing listens (the discard port of loopback): every call fails
/// to connect at once.
pub const UNREACHABLE: &str = "http://127.0.0.1:9";

/// Top-level keys every config has unless [`Config::config`] sets them: a fast
/// schedule, and a timeout that fails a hung call well within a test's deadline.
const DEFAULTS: &str = "poll_interval: 1s\nrequest_timeout: 5s";

/// An exporter config being built. It starts as the test credentials and one target,
/// the test project in the test region, with no images; every target is at the
/// config's endpoint (the fleet's fake, for a [`Fleet`]).
#[derive(Clone, Debug)]
pub struct Config {
    endpoint: String,
    top: Entries,
    credentials: Option<String>,
    targets: Vec<Target>,
}

impl Config {
    /// The test credentials and the test project's target, at `endpoint`.
    pub fn new(endpoint: &str) -> Config {
        Config {
            endpoint: endpoint.to_string(),
            top: Entries::default().set(DEFAULTS),
            credentials: Some(format!("access_key_id: {AK}\nsecret_access_key: {SK}")),
            targets: vec![Target::new(PROJECT)],
        }
    }

    /// Sets top-level `keys` (YAML, unindented; a key set before is replaced where it
    /// was, a new one goes last).
    pub fn config(mut self, keys: &str) -> Self {
        self.top = self.top.set(keys);
        self
    }

    /// No top-level `key` (one set by [`Config::config`], or a default).
    pub fn without(mut self, key: &str) -> Self {
        self.top.0.retain(|(k, _)| k != key);
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

    /// Lists `images` in the test project's target.
    pub fn images(self, images: &[impl AsRef<str>]) -> Self {
        self.main_target(|t| t.images(images))
    }

    /// Lists `image` in the test project's target with `keys` (YAML, unindented:
    /// `watch_members: [...]`).
    pub fn image(self, image: &str, keys: &str) -> Self {
        self.main_target(|t| t.image(image, keys))
    }

    /// No images in the test project's target (before listing others).
    pub fn no_images(self) -> Self {
        self.main_target(Target::no_images)
    }

    /// Sets `keys` (YAML, unindented: `discover: ...`) of the test project's target.
    pub fn target_keys(self, keys: &str) -> Self {
        self.main_target(|t| t.keys(keys))
    }

    /// Changes the first target (the test project's, unless changed here).
    pub fn main_target(mut self, change: impl FnOnce(Target) -> Target) -> Self {
        let first = self.targets.remove(0);
        self.targets.insert(0, change(first));
        self
    }

    /// Adds `target` after the others.
    pub fn target(mut self, target: Target) -> Self {
        self.targets.push(target);
        self
    }

    /// The config file's text.
    pub fn text(&self) -> String {
        let mut text = self.top.text(0);
        if let Some(block) = &self.credentials {
            text.push_str("credentials:\n");
            text.push_str(&indent(block, 2));
        }
        text.push_str("targets:\n");
        for target in &self.targets {
            text.push_str(&target.text(&self.endpoint));
        }
        text
    }

    /// Writes the config to `dir/config.yaml`; returns its path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join("config.yaml");
        std::fs::write(&path, self.text()).expect("write config");
        path
    }
}

/// One entry of `targets:`, built for [`Config::target`] or [`Config::main_target`].
#[derive(Clone, Debug)]
pub struct Target {
    region: String,
    project: Option<String>,
    keys: Entries,
    /// (ID, extra keys)
    images: Vec<(String, String)>,
}

impl Target {
    /// `project` in the test region, with no images.
    pub fn new(project: &str) -> Target {
        Target {
            region: REGION.to_string(),
            project: Some(project.to_string()),
            keys: Entries::default(),
            images: Vec::new(),
        }
    }

    /// Sets the project ID (any text: a config error is a case too).
    pub fn project(mut self, project: &str) -> Self {
        self.project = Some(project.to_string());
        self
    }

    /// No `project_id:` (the exporter looks it up through IAM by the region's name).
    pub fn no_project(mut self) -> Self {
        self.project = None;
        self
    }

    pub fn region(mut self, region: &str) -> Self {
        self.region = region.to_string();
        self
    }

    /// Sets `keys` (YAML, unindented: `discover: ...`, `credentials: ...`), replacing a
    /// key set before.
    pub fn keys(mut self, keys: &str) -> Self {
        self.keys = self.keys.set(keys);
        self
    }

    /// Lists `images` (after those listed before; an ID twice is listed twice).
    pub fn images(mut self, images: &[impl AsRef<str>]) -> Self {
        self.images.extend(
            images
                .iter()
                .map(|i| (i.as_ref().to_string(), String::new())),
        );
        self
    }

    /// Lists `image` with `keys` (YAML, unindented: `name: golden`).
    pub fn image(mut self, image: &str, keys: &str) -> Self {
        self.images.push((image.to_string(), keys.to_string()));
        self
    }

    pub fn no_images(mut self) -> Self {
        self.images.clear();
        self
    }

    fn text(&self, endpoint: &str) -> String {
        let mut text = format!("  - region: {}\n", self.region);
        if let Some(project) = &self.project {
            text.push_str(&format!("    project_id: {project}\n"));
        }
        text.push_str(&format!("    endpoint: {endpoint}\n"));
        text.push_str(&self.keys.text(4));
        if !self.images.is_empty() {
            text.push_str("    images:\n");
        }
        for (id, keys) in &self.images {
            text.push_str(&format!("      - id: {id}\n"));
            text.push_str(&indent(keys, 8));
        }
        text
    }
}

/// YAML mapping entries in order, each a key and its whole text (the key's line and
/// the indented lines under it).
#[derive(Clone, Debug, Default)]
struct Entries(Vec<(String, String)>);

impl Entries {
    /// Sets each entry of `yaml` (unindented): in place of an entry with the same key,
    /// else last.
    fn set(mut self, yaml: &str) -> Self {
        let mut new: Vec<(String, String)> = Vec::new();
        for line in yaml.lines().filter(|l| !l.trim().is_empty()) {
            match new.last_mut() {
                Some((_, text)) if line.starts_with([' ', '-']) => {
                    text.push('\n');
                    text.push_str(line);
                }
                _ => {
                    let key = line.split(':').next().unwrap_or(line).trim().to_string();
                    new.push((key, line.to_string()));
                }
            }
        }
        for (key, text) in new {
            match self.0.iter_mut().find(|(k, _)| *k == key) {
                Some(entry) => entry.1 = text,
                None => self.0.push((key, text)),
            }
        }
        self
    }

    fn text(&self, n: usize) -> String {
        self.0.iter().map(|(_, text)| indent(text, n)).collect()
    }
}

/// A fake IMS with the test account, and a [`Config`] for it being built.
pub struct Fleet {
    pub fake: FakeIms,
    /// Where the config file (and anything a test puts next to it) lives.
    pub dir: tempfile::TempDir,
    /// Behind a lock so that [`Fleet::rewrite`] works while a test holds `&fleet.fake`.
    config: Mutex<Config>,
    envs: Vec<(String, String)>,
}

impl Fleet {
    /// Starts the fake IMS with the test account ([`start_fake`]); the config so far is
    /// [`Config::new`] at the fake.
    pub async fn new() -> Fleet {
        Fleet::with_fake(start_fake().await)
    }

    /// A fleet around a fake the test started itself (over TLS, say).
    pub fn with_fake(fake: FakeIms) -> Fleet {
        Fleet {
            config: Mutex::new(Config::new(&fake.endpoint())),
            fake,
            dir: tempfile::tempdir().expect("temporary directory"),
            envs: Vec::new(),
        }
    }

    /// Shares each of `images` of the test project with [`MEMBER`], accepted, in the
    /// fake.
    pub fn shared(self, images: &[impl AsRef<str>]) -> Self {
        for image in images {
            share(&self.fake, PROJECT, image.as_ref(), MEMBER, "accepted");
        }
        self
    }

    /// Changes the config ([`Config`]'s methods) before it is written.
    pub fn with_config(mut self, change: impl FnOnce(Config) -> Config) -> Self {
        let config = self.config.get_mut().expect("config lock");
        *config = change(config.clone());
        self
    }

    /// [`Config::images`]
    pub fn images(self, images: &[impl AsRef<str>]) -> Self {
        self.with_config(|c| c.images(images))
    }

    /// [`Config::image`]
    pub fn image(self, image: &str, keys: &str) -> Self {
        self.with_config(|c| c.image(image, keys))
    }

    /// [`Config::target_keys`]
    pub fn target_keys(self, keys: &str) -> Self {
        self.with_config(|c| c.target_keys(keys))
    }

    /// [`Config::target`]
    pub fn target(self, target: Target) -> Self {
        self.with_config(|c| c.target(target))
    }

    /// [`Config::config`]
    pub fn config(self, keys: &str) -> Self {
        self.with_config(|c| c.config(keys))
    }

    /// [`Config::credentials`]
    pub fn credentials(self, block: &str) -> Self {
        self.with_config(|c| c.credentials(block))
    }

    /// [`Config::no_credentials`]
    pub fn no_credentials(self) -> Self {
        self.with_config(Config::no_credentials)
    }

    /// Sets an environment variable for the exporters the fleet starts.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.to_string(), value.to_string()));
        self
    }

    /// Changes the config and writes it (for a reload, or the next start); returns
    /// its path.
    pub fn rewrite(&self, change: impl FnOnce(Config) -> Config) -> PathBuf {
        {
            let mut config = self.config.lock().expect("config lock");
            *config = change(config.clone());
        }
        self.write_config()
    }

    /// Where [`Fleet::write_config`] writes.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    /// Writes the config file; returns its path.
    pub fn write_config(&self) -> PathBuf {
        self.config
            .lock()
            .expect("config lock")
            .write(self.dir.path())
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
