//! Secrets (secret key, security token, basic-auth passwords, the webhook token) never
//! show up in what
//! the exporter writes: logs at debug level, error messages, `/metrics`, `--once` and
//! `--config.check` output. The real binary goes through a run with failures (a
//! failing image, a broken body, wrong signatures after a reload, a refused reload,
//! SIGHUP, wrong basic-auth passwords, pushes with the right and a wrong webhook token)
//! with known secret strings, and everything it
//! printed is searched for them.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use crate::support::*;
use base64::Engine;
use ims_exporter::fake_ims::Fault;

const SK_GOOD: &str = "SKsecretGOOD9f8e7d6c5b4a39281706f5e4d3c2b1a0";
const SK_WRONG: &str = "SKsecretWRONG1a2b3c4d5e6f708192a3b4c5d6e7f80";
const SK_UNUSED: &str = "SKsecretREFUSED55aa66bb77cc88dd99ee00ff11";
const TOKEN: &str = "TOKENsecret-0123456789abcdefFEDCBA9876543210";
const PASSWORD: &str = "pw-secret-RIGHT-8d7c6b5a";
const WRONG_PASSWORD: &str = "pw-secret-WRONG-1f2e3d4c";
const USER: &str = "prometheus";
const WEBHOOK_TOKEN: &str = "hook-secret-RIGHT-4b3a29180f1e2d3c";
const WRONG_WEBHOOK_TOKEN: &str = "hook-secret-WRONG-7a6b5c4d3e2f1a0b";

const IMG_OK: &str = "d164b5df-1bc3-4c3f-893e-3e471fd16e64";
const IMG_FAIL: &str = "370befec-a369-475e-a224-44a45927a8fe";
const IMG_BROKEN: &str = "5b1f8e0a-6c1e-4a53-9d7e-2f0b8c1d9e21";

/// Every string that must never be printed: the secrets and the forms they travel in.
fn needles() -> Vec<(String, &'static str)> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    vec![
        (SK_GOOD.into(), "secret key"),
        (SK_WRONG.into(), "secret key after reload"),
        (SK_UNUSED.into(), "secret key of a refused config"),
        (TOKEN.into(), "security token"),
        (PASSWORD.into(), "basic-auth password"),
        (WRONG_PASSWORD.into(), "wrong basic-auth password"),
        (WEBHOOK_TOKEN.into(), "webhook token"),
        (WRONG_WEBHOOK_TOKEN.into(), "wrong webhook token"),
        (b64(&format!("{USER}:{PASSWORD}")), "Authorization header"),
        (
            b64(&format!("{USER}:{WRONG_PASSWORD}")),
            "wrong Authorization header",
        ),
    ]
}

fn assert_clean(what: &str, text: &str) {
    for (needle, name) in needles() {
        if let Some(at) = text.find(&needle) {
            let from = text[..at].rfind('\n').map_or(0, |i| i + 1);
            let to = text[at..].find('\n').map_or(text.len(), |i| at + i);
            panic!("the {name} appears in {what}:\n{}", &text[from..to]);
        }
    }
}

/// The config's credentials: the test access key with `sk`, and the security token.
fn credentials(sk: &str) -> String {
    format!("access_key_id: {AK}\nsecret_access_key: {sk}\nsecurity_token: {TOKEN}")
}

/// The daemon with both its stdout and stderr captured, line by line.
struct Daemon {
    child: KillOnDrop,
    addr: String,
    output: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    async fn start(config: &Path, web: &Path) -> Daemon {
        let mut child = Command::new(bin())
            .args(["--config.file", config.to_str().unwrap()])
            .args(["--web.config.file", web.to_str().unwrap()])
            .args(["--web.listen-address", "127.0.0.1:0"])
            .args(["--log.level", "debug", "--web.enable-lifecycle"])
            .env_remove("HUAWEICLOUD_SDK_AK")
            .env_remove("HUAWEICLOUD_SDK_SK")
            .env_remove("HUAWEICLOUD_SDK_SECURITY_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ims-exporter");
        let output = Arc::new(Mutex::new(Vec::new()));
        let pipes: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().unwrap()),
            Box::new(child.stderr.take().unwrap()),
        ];
        for pipe in pipes {
            let sink = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    sink.lock().unwrap().push(line);
                }
            });
        }
        let mut child = KillOnDrop(child);
        let addr = wait_for("the exporter to listen", async || {
            if let Ok(Some(status)) = child.0.try_wait() {
                panic!("exporter exited early with {status}");
            }
            output.lock().unwrap().iter().find_map(|l| {
                l.contains("listening")
                    .then(|| {
                        l.split_whitespace()
                            .find_map(|f| f.strip_prefix("address="))
                            .map(str::to_string)
                    })
                    .flatten()
            })
        })
        .await;
        Daemon {
            child,
            addr,
            output,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    fn output(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }

    fn signal(&self, sig: &str) {
        signal(self.child.0.id(), sig);
    }
}

/// The fake knows the test access key with [`SK_GOOD`] and [`TOKEN`]; of the three
/// images, one polls, one fails and one answers a broken body.
async fn fleet() -> Fleet {
    let fleet = Fleet::new()
        .await
        .shared(&[IMG_OK, IMG_FAIL, IMG_BROKEN])
        .images(&[IMG_OK, IMG_FAIL, IMG_BROKEN])
        .credentials(&credentials(SK_GOOD));
    let state = &fleet.fake.state;
    state.add_account(AK, SK_GOOD, Some(TOKEN));
    state.set_fault(IMG_FAIL, Some(Fault::Status(500)));
    state.set_fault(IMG_BROKEN, Some(Fault::BrokenBody));
    let token = write(fleet.dir.path(), "webhook-token", WEBHOOK_TOKEN);
    fleet.config(&format!(
        "events:\n  webhook:\n    token_file: {}",
        token.display()
    ))
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_never_appear_in_logs_errors_or_metrics() {
    let fleet = fleet().await;
    let (fake, dir) = (&fleet.fake, &fleet.dir);
    let config = fleet.write_config();
    let hash = bcrypt::hash(PASSWORD, 4).unwrap();
    let web = write(
        dir.path(),
        "web.yml",
        &format!("basic_auth_users:\n  {USER}: '{hash}'\n"),
    );
    let client = reqwest::Client::new();
    let right = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    );
    let wrong = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{WRONG_PASSWORD}"))
    );
    let mut bodies = String::new();

    // `--config.check` and `--once` (which fails: two images cannot be polled).
    let mut check = Command::new(bin());
    check.args(["--config.file", config.to_str().unwrap(), "--config.check"]);
    check.args(["--web.config.file", web.to_str().unwrap()]);
    let out = run_tool(check, None, DEADLINE).await;
    assert!(out.status.success(), "{}", describe(&out));
    assert_clean("--config.check output", &describe(&out));
    let mut once = Command::new(bin());
    once.args(["--config.file", config.to_str().unwrap(), "--once"]);
    once.args(["--log.level", "debug"]);
    let out = run_tool(once, None, DEADLINE).await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_clean("--once output", &describe(&out));

    let daemon = Daemon::start(&config, &web).await;
    let scrape = async |auth: &str| {
        let r = client
            .get(daemon.url("/metrics"))
            .header("authorization", auth)
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    };
    let samples = wait_for("the first poll, good and failing images", async || {
        let (status, body) = scrape(&right).await;
        assert_eq!(status, 200);
        let s = parse_exposition(&body);
        let ok = value(&s, "ims_image_poll_success", &[("image_id", IMG_OK)]);
        let failed = value(&s, "ims_image_poll_success", &[("image_id", IMG_FAIL)]);
        let broken = value(&s, "ims_image_poll_success", &[("image_id", IMG_BROKEN)]);
        (ok == Some(1.0) && failed == Some(0.0) && broken == Some(0.0)).then_some(body)
    })
    .await;
    bodies.push_str(&samples);

    // Pushes with the webhook token (in the header and the query) and a wrong one.
    for (token, status) in [(WEBHOOK_TOKEN, 202), (WRONG_WEBHOOK_TOKEN, 401)] {
        let r = client
            .post(daemon.url(&format!("/api/v1/events?token={token}")))
            .header("content-type", "application/json")
            .body(r#"{"trace_id": "t-1", "trace_name": "addMember", "service_type": "IMS"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status);
        bodies.push_str(&r.text().await.unwrap());
        let r = client
            .post(daemon.url("/api/v1/events"))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        bodies.push_str(&r.text().await.unwrap());
    }

    // Wrong passwords and unknown users, a few times each.
    for _ in 0..3 {
        assert_eq!(scrape(&wrong).await.0, 401);
        let unknown = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("nobody:{PASSWORD}"))
        );
        assert_eq!(scrape(&unknown).await.0, 401);
    }

    // Reload onto a secret key the fake does not know: every request's signature fails.
    let rejected_before = fake.state.rejected_signatures();
    fleet.rewrite(|c| c.credentials(&credentials(SK_WRONG)));
    let r = client
        .post(daemon.url("/-/reload"))
        .header("authorization", &right)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    wait_for("signatures to be rejected", async || {
        (fake.state.rejected_signatures() > rejected_before + 2).then_some(())
    })
    .await;
    wait_for("the good image to fail too", async || {
        let (_, body) = scrape(&right).await;
        let s = parse_exposition(&body);
        (value(&s, "ims_image_poll_success", &[("image_id", IMG_OK)]) == Some(0.0)).then_some(body)
    })
    .await;

    // A config whose secret key is of the wrong type, over POST and over SIGHUP:
    // refused, and the message must not quote it.
    fleet.rewrite(|c| c.credentials(&credentials(&format!("{{ value: {SK_UNUSED} }}"))));
    let r = client
        .post(daemon.url("/-/reload"))
        .header("authorization", &right)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    bodies.push_str(&r.text().await.unwrap());
    daemon.signal("-HUP");
    wait_for("the SIGHUP reload to be refused", async || {
        (daemon.output().matches("reload refused").count() >= 2).then_some(())
    })
    .await;

    let (status, body) = scrape(&right).await;
    assert_eq!(status, 200);
    bodies.push_str(&body);
    let (status, body) = scrape(&wrong).await;
    assert_eq!(status, 401);
    bodies.push_str(&body);

    daemon.signal("-TERM");
    let mut daemon = daemon;
    let status = wait_for("the exporter to exit", async || {
        daemon.child.0.try_wait().unwrap()
    })
    .await;
    assert!(status.success(), "{status}");
    // The pipes close with the process; give the readers their last lines.
    wait_for("the last log line", async || {
        daemon.output().contains("shutting down").then_some(())
    })
    .await;
    fleet.stop().await;

    let output = daemon.output();
    // The run did produce debug lines and the failures, or this test proves nothing.
    for expected in [
        "level=debug",
        "level=error",
        "reload refused",
        "configuration reloaded",
    ] {
        assert!(output.contains(expected), "no {expected:?} in:\n{output}");
    }
    assert_clean("the daemon's output", &output);
    assert_clean("the HTTP responses", &bodies);
}
