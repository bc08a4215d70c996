//! One scenario under way, as every mode drives it: the fake IMS populated with the
//! fleet, the exporter polling it, a scrape client, and the poll cycles counted from
//! the requests the fake receives.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ims_exporter::fake_ims::{FakeIms, FakeState};

use crate::args::{Args, Scenario};
use crate::exporter::{Exporter, TempDir};
use crate::fleet::{config_yaml, Fleet};
use crate::proc::{clock_ticks, cpu_seconds, status_kib};
use crate::scrape::{scrape, Scrape, Variant};

/// Timeout of one scrape.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(120);

pub(crate) struct Run {
    pub(crate) fleet: Fleet,
    fake: FakeIms,
    pub(crate) exporter: Exporter,
    /// The exporter's config file.
    config: PathBuf,
    /// The exporter's `--storage.path` (with `--state`).
    state_dir: Option<PathBuf>,
    /// Holds `config` and `state_dir`; removed when the run is dropped.
    _dir: TempDir,
    client: reqwest::Client,
    ticks: f64,
    pub(crate) per_cycle: u64,
    /// How long waiting for one cycle may take before the run is called stuck.
    pub(crate) cycle_budget: Duration,
    deadline: Instant,
    /// Requests the fake had received when the current exporter started (`--peer`
    /// starts a second one on the same fake).
    base_requests: u64,
    /// The body of the last scrape (reused).
    scrape_buf: Vec<u8>,
}

impl Run {
    pub(crate) async fn start(args: &Args, s: &Scenario, bin: &Path) -> Result<Run, String> {
        let state = FakeState::default();
        state.set_latency(args.latency);
        let built = Instant::now();
        let fleet = Fleet::populate(state.clone(), s);
        eprintln!(
            "[{}] fake IMS: {} images × {} members ({} in all) in {:.1}s; latency {:?}",
            s.name,
            s.images,
            s.members,
            s.images * s.members,
            built.elapsed().as_secs_f64(),
            args.latency
        );
        let fake = FakeIms::start(state)
            .await
            .map_err(|e| format!("cannot start the fake IMS: {e}"))?;
        let dir = TempDir::new(&s.name)?;
        let config = dir.path().join("config.yaml");
        std::fs::write(&config, config_yaml(args, &fake.endpoint(), &fleet))
            .map_err(|e| format!("cannot write {}: {e}", config.display()))?;
        let state_dir = args.state.then(|| dir.path().join("state"));
        let exporter = Exporter::start(bin, &config, state_dir.as_deref()).await?;
        eprintln!(
            "[{}] exporter pid {} listening on {}",
            s.name,
            exporter.pid(),
            exporter.addr
        );
        ims_exporter::tls::ensure_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(SCRAPE_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let l = args.latency.as_secs_f64();
        let ideal = s.requests_per_cycle() as f64 * l / args.concurrency as f64;
        let path = s.pages_per_image() as f64 * l;
        Ok(Run {
            fleet,
            fake,
            exporter,
            config,
            state_dir,
            _dir: dir,
            client,
            ticks: clock_ticks(),
            per_cycle: s.requests_per_cycle(),
            cycle_budget: Duration::from_secs(60) + Duration::from_secs_f64(20.0 * ideal.max(path)),
            deadline: Instant::now() + args.timeout,
            base_requests: 0,
            scrape_buf: Vec::new(),
        })
    }

    /// Starts a new exporter on the same config and state directory in place of the
    /// current one (`--state`'s restart; the caller kills the old one first).
    pub(crate) async fn restart_exporter(&mut self, bin: &Path) -> Result<(), String> {
        self.exporter = Exporter::start(bin, &self.config, self.state_dir.as_deref()).await?;
        Ok(())
    }

    /// Kills the exporter and starts `cmd` in its place on the same fake; the poll
    /// cycles are counted afresh from here.
    pub(crate) async fn replace_exporter(
        &mut self,
        cmd: std::process::Command,
        what: &Path,
    ) -> Result<(), String> {
        self.exporter.kill();
        self.base_requests = self.fleet.state.requests();
        self.exporter = Exporter::spawn(cmd, what).await?;
        Ok(())
    }

    /// Requests the fake has received from the current exporter (at arrival).
    fn requests(&self) -> u64 {
        self.fleet.state.requests() - self.base_requests
    }

    /// The poll cycle under way (0-based), from the fake's request count.
    pub(crate) fn current_cycle(&self) -> u64 {
        self.requests().saturating_sub(1) / self.per_cycle
    }

    /// Waits until cycle `c` has started (its first request reached the fake).
    pub(crate) async fn wait_cycle_start(&mut self, c: u64) -> Result<(), String> {
        let want = c * self.per_cycle + 1;
        let deadline = (Instant::now() + self.cycle_budget).min(self.deadline);
        let mut n = 0u64;
        while self.requests() < want {
            if n.is_multiple_of(100) {
                self.exporter.check_alive()?;
            }
            n += 1;
            if Instant::now() > deadline {
                return Err(format!(
                    "timed out waiting for poll cycle {c} (the fake has {} requests, expected {want}); the exporter's log:\n{}",
                    self.requests(),
                    self.exporter.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(())
    }

    pub(crate) async fn scrape(&mut self, variant: Variant) -> Result<Scrape<'_>, String> {
        self.exporter.check_alive()?;
        if Instant::now() > self.deadline {
            return Err("the scenario ran out of time (--timeout)".into());
        }
        let url = format!("http://{}/metrics", self.exporter.addr);
        scrape(&self.client, &url, variant, &mut self.scrape_buf).await
    }

    /// The body of the last scrape.
    pub(crate) fn last_body(&self) -> &[u8] {
        &self.scrape_buf
    }

    pub(crate) fn cpu(&self) -> Result<f64, String> {
        cpu_seconds(self.exporter.pid(), self.ticks)
    }

    pub(crate) fn endpoint(&self) -> String {
        self.fake.endpoint()
    }

    /// The run's own temporary directory.
    pub(crate) fn dir(&self) -> &Path {
        self._dir.path()
    }

    pub(crate) fn kib(&self, key: &str) -> Result<u64, String> {
        status_kib(self.exporter.pid(), key)
    }

    pub(crate) async fn stop(self) {
        let Run { exporter, fake, .. } = self;
        // (also used by `--state`, whose restart replaces the exporter)
        drop(exporter);
        fake.stop().await;
    }
}
