//! A broken or hostile API, a slow client or a bad config never corrupts the
//! snapshot, stalls the exporter or panics it (docs/operations.md#hardening): each test
//! scripts the fake IMS (or a bare socket) to answer as no honest server would, and
//! checks what a user sees in metrics, logs and exit codes.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::*;
use ims_exporter::fake_ims::{Canned, Fault};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const IMG: &str = "d164b5df-1bc3-4c3f-893e-3e471fd16e64";
const IMG2: &str = "2a5b7c9d-0000-4000-8000-000000000002";
const OTHER_PROJECT: &str = "2c3d4e5f60718293a4b5c6d7e8f90a1b";

fn uuid(i: usize) -> String {
    format!("{i:08x}-0000-4000-8000-000000000000")
}

async fn run_once(cfg: &std::path::Path, extra_args: &[&str]) -> (i32, Vec<Sample>, String) {
    let mut cmd = Command::new(bin());
    cmd.args(["--once", "--log.level", "debug", "--config.file"])
        .arg(cfg)
        .args(extra_args)
        .env(
            "HUAWEICLOUD_SDK_CREDENTIALS_FILE",
            "/nonexistent/ims-exporter-test-credentials",
        );
    let out = run_tool(cmd, None, Duration::from_secs(60)).await;
    (
        out.status.code().unwrap_or(-1),
        parse_exposition(&String::from_utf8_lossy(&out.stdout)),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn errors(s: &[Sample], image: &str, reason: &str) -> f64 {
    value(
        s,
        "ims_image_poll_errors_total",
        &[("image_id", image), ("reason", reason)],
    )
    .unwrap_or(0.0)
}

/// Item 1: a 200 whose body lacks the member list (or has the wrong JSON type) is a
/// `decode` failure; the last good members stay, and nothing is "removed".
#[tokio::test(flavor = "multi_thread")]
async fn a_200_without_the_member_list_keeps_the_last_good_data() {
    let fleet = Fleet::new().await;
    for i in 1..=3 {
        share(&fleet.fake, PROJECT, IMG, &member_id(i), "accepted");
    }
    let fleet = fleet.images(&[IMG]).config("retry:\n  max_attempts: 1");
    let fake = &fleet.fake;
    let exporter = fleet.start_unready(&[]).await;
    let unexpected = async || {
        let s = exporter.scrape_samples().await;
        value(&s, "ims_image_unexpected_members", &[("image_id", IMG)])
    };
    let removed = |s: &[Sample]| {
        let labels = [("image_id", IMG), ("change", "removed")];
        value(s, "ims_member_changes_total", &labels)
    };
    wait_for("the first good poll", async || {
        (unexpected().await == Some(3.0)).then_some(())
    })
    .await;
    for body in [
        "{}",
        "[]",
        r#"{"error_code":"APIGW.0101","error_msg":"The API does not exist"}"#,
        r#"{"members":{}}"#,
    ] {
        let before = errors(&exporter.scrape_samples().await, IMG, "decode");
        fake.state
            .set_fault(IMG, Some(Fault::Script(vec![Canned::ok(body)])));
        let s = wait_for("a decode failure", async || {
            let s = exporter.scrape_samples().await;
            (errors(&s, IMG, "decode") > before).then_some(s)
        })
        .await;
        assert_eq!(
            value(&s, "ims_image_poll_success", &[("image_id", IMG)]),
            Some(0.0),
            "{body}"
        );
        assert_eq!(
            value(&s, "ims_image_unexpected_members", &[("image_id", IMG)]),
            Some(3.0),
            "{body}: the last good members stay"
        );
        assert_eq!(
            find(&s, "ims_image_member_unexpected", &[("image_id", IMG)]).len(),
            3
        );
    }
    assert_eq!(removed(&exporter.scrape_samples().await), Some(0.0));
    // A real empty list is a real empty answer.
    fake.state.set_fault(
        IMG,
        Some(Fault::Script(vec![Canned::ok(r#"{"members":[]}"#)])),
    );
    wait_for("the real empty answer", async || {
        (unexpected().await == Some(0.0)).then_some(())
    })
    .await;
    assert_eq!(removed(&exporter.scrape_samples().await), Some(3.0));
    fleet.stop().await;
}

/// Item 1, discovery: `/v2/cloudimages` answering `{}` keeps the discovered images.
#[tokio::test(flavor = "multi_thread")]
async fn a_discovery_without_the_image_list_keeps_the_discovered_images() {
    let fleet = Fleet::new().await;
    for (i, img) in [IMG, IMG2].iter().enumerate() {
        fleet
            .fake
            .state
            .add_image(PROJECT, img, &format!("golden-{i}"));
        share(&fleet.fake, PROJECT, img, &member_id(1), "accepted");
    }
    let fleet = fleet
        .target_keys("discover: {}")
        .config("discovery_interval: 1s\nretry:\n  max_attempts: 1");
    let fake = &fleet.fake;
    let exporter = fleet.start(&[]).await;
    let info = async || {
        let s = exporter.scrape_samples().await;
        let ok = value(&s, "ims_discovery_success", &[]);
        (find(&s, "ims_image_info", &[]).len(), ok)
    };
    assert_eq!(info().await, (2, Some(1.0)));
    fake.state
        .set_fault(PROJECT, Some(Fault::Script(vec![Canned::ok("{}")])));
    wait_for("the discovery failure", async || {
        (info().await.1 == Some(0.0)).then_some(())
    })
    .await;
    assert_eq!(info().await.0, 2, "the discovered images stay");
    fleet.stop().await;
}

/// A bare HTTP server on loopback that counts the connections it is sent.
async fn counting_server() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let body = r#"{"members":[]}"#;
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(reply.as_bytes()).await;
        }
    });
    (addr, hits)
}

/// Item 2: a 3xx is an error with its own reason; nothing goes to the other host.
#[tokio::test(flavor = "multi_thread")]
async fn redirects_are_never_followed() {
    let fleet = Fleet::new().await.images(&[IMG]);
    let fake = &fleet.fake;
    share(fake, PROJECT, IMG, &member_id(1), "accepted");
    let (other, hits) = counting_server().await;
    fake.state.set_fault(
        IMG,
        Some(Fault::Script(vec![Canned {
            status: 302,
            headers: vec![(
                "location".into(),
                format!("http://{other}/v1/{PROJECT}/cloudimages/{IMG}/members"),
            )],
            body: String::new(),
        }])),
    );
    let (code, s, logs) = run_once(&fleet.write_config(), &[]).await;
    assert_eq!(code, 1, "{logs}");
    assert_eq!(errors(&s, IMG, "redirect"), 1.0, "{logs}");
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the other host saw nothing");
    fleet.stop().await;
}

/// The smaller point: a body cut off mid-read is `read`, not `connect`.
#[tokio::test(flavor = "multi_thread")]
async fn a_truncated_body_is_a_read_failure() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{\"members\":[")
                .await;
            // Closed here, 988 bytes short.
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::new(&format!("http://{addr}"))
        .images(&[IMG])
        .config("retry:\n  max_attempts: 1")
        .write(dir.path());
    let (code, s, logs) = run_once(&cfg, &[]).await;
    assert_eq!(code, 1, "{logs}");
    assert_eq!(errors(&s, IMG, "read"), 1.0, "{logs}");
    assert_eq!(errors(&s, IMG, "connect"), 0.0, "{logs}");
    server.abort();
}

/// Item 3: a SIGTERM while a reload runs (here one that hangs reading a FIFO) ends
/// the process; the signal is never lost.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_reload_is_not_lost() {
    let fleet = Fleet::new().await.images(&[IMG]);
    share(&fleet.fake, PROJECT, IMG, &member_id(1), "accepted");
    let exporter = fleet.start(&[]).await;
    let fifo = fleet.dir.path().join("allow.fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    fleet.rewrite(|c| c.config(&format!("allowed_members_file: {}", fifo.display())));
    let signal = |sig: &str| signal(exporter.pid(), sig);
    signal("-HUP");
    wait_for("the reload to start", async || {
        exporter
            .logs()
            .contains("reloading the configuration")
            .then_some(())
    })
    .await;
    let status = exporter.terminate().await;
    assert!(status.success(), "{status}");
    fleet.stop().await;
}

/// Item 4: a target whose endpoint hangs holds only its share of the concurrent
/// requests; another target's images are polled meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn a_hung_target_delays_only_its_own_images() {
    let hung: Vec<String> = (0..16).map(uuid).collect();
    let fleet = Fleet::new()
        .await
        .images(&hung)
        .target(Target::new(OTHER_PROJECT).images(&[IMG]))
        .config("request_timeout: 120s\nmax_concurrent_requests: 4\nretry:\n  max_attempts: 1");
    let fake = &fleet.fake;
    for img in &hung {
        share(fake, PROJECT, img, &member_id(1), "accepted");
        fake.state
            .set_fault(img, Some(Fault::Delay(Duration::from_secs(300))));
    }
    share(fake, OTHER_PROJECT, IMG, &member_id(1), "accepted");
    let exporter = fleet.start_unready(&[]).await;
    wait_for("the healthy target's image to be polled", async || {
        let s = exporter.scrape_samples().await;
        let ok = value(
            &s,
            "ims_image_poll_success",
            &[("project_id", OTHER_PROJECT), ("image_id", IMG)],
        );
        (ok == Some(1.0)).then_some(())
    })
    .await;
    drop(exporter);
    fleet.stop().await;
}

/// Item 6: an allowlist file that hangs (a FIFO standing in for a dead NFS mount)
/// stalls no scrape, no health check and no shutdown.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn a_hung_allowlist_file_stalls_nothing() {
    let fleet = Fleet::new().await;
    let images: Vec<String> = (0..6).map(uuid).collect();
    for img in &images {
        share(&fleet.fake, PROJECT, img, &member_id(1), "accepted");
    }
    let allow = fleet.dir.path().join("allow.txt");
    std::fs::write(&allow, format!("{}\n", member_id(1))).unwrap();
    let fleet = fleet
        .images(&images)
        .config(&format!("allowed_members_file: {}", allow.display()));
    let exporter = fleet.start(&[]).await;
    std::fs::remove_file(&allow).unwrap();
    assert!(Command::new("mkfifo")
        .arg(&allow)
        .status()
        .unwrap()
        .success());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    // Probed all along while three more poll cycles (1s each) run into the FIFO.
    let polled = fleet.fake.state.requests();
    let started = std::time::Instant::now();
    while fleet.fake.state.requests() < polled + 3 * images.len() as u64 {
        for path in ["/metrics", "/-/healthy"] {
            let r = client.get(exporter.url(path)).send().await;
            assert!(r.as_ref().is_ok_and(|r| r.status() == 200), "{path}: {r:?}");
        }
        assert!(started.elapsed() < DEADLINE, "the polls stopped");
    }
    let s = exporter.scrape_samples().await;
    assert_eq!(
        value(&s, "ims_image_unexpected_members", &[("image_id", IMG_0)]),
        Some(0.0),
        "the allowlist's last entries stay in force"
    );
    let status = exporter.terminate().await;
    assert!(status.success(), "{status}");
    fleet.stop().await;
}

const IMG_0: &str = "00000000-0000-4000-8000-000000000000";

/// Item 7: `/-/reload` is off unless `--web.enable-lifecycle`; a reload polls only the
/// images it added.
#[tokio::test(flavor = "multi_thread")]
async fn reload_is_gated_and_polls_only_added_images() {
    let images: Vec<String> = (0..3).map(uuid).collect();
    // One poll an hour: any request after the first cycle comes from a reload.
    let fleet = Fleet::new()
        .await
        .images(&images)
        .config("poll_interval: 1h");
    let fake = &fleet.fake;
    for img in images.iter().chain([&IMG.to_string()]) {
        share(fake, PROJECT, img, &member_id(1), "accepted");
    }
    let exporter = fleet.start(&[]).await;
    let client = reqwest::Client::new();
    let r = client.post(exporter.url("/-/reload")).send().await.unwrap();
    assert_eq!(r.status(), 403, "off without --web.enable-lifecycle");
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("Lifecycle API is not enabled"));

    let before = fake.state.requests();
    assert_eq!(before, 3);
    for _ in 0..10 {
        exporter.reload().await;
    }
    assert_eq!(fake.state.requests(), before, "10 reloads polled nothing");

    // An added image is polled at once, and only it.
    fleet.rewrite(|c| c.images(&[IMG]));
    exporter.hangup();
    wait_for("the added image to be polled", async || {
        let s = exporter.scrape_samples().await;
        (value(&s, "ims_image_poll_success", &[("image_id", IMG)]) == Some(1.0)).then_some(())
    })
    .await;
    assert_eq!(fake.state.requests(), before + 1);
    let s = exporter.scrape_samples().await;
    for img in &images {
        assert_eq!(
            value(&s, "ims_image_poll_success", &[("image_id", img)]),
            Some(1.0),
            "{img} kept its state"
        );
    }
    fleet.stop().await;
}

/// Item 8: a server that ignores `limit` and never stops paging fails the image
/// `too_large` at the per-image cap, and the last good members stay; the fleet-wide
/// cap holds across images.
#[tokio::test(flavor = "multi_thread")]
async fn member_caps_fail_the_image_too_large() {
    let fleet = Fleet::new()
        .await
        .images(&[IMG])
        .config("max_members_per_image: 1000\nretry:\n  max_attempts: 1");
    let fake = &fleet.fake;
    for i in 1..=2 {
        share(fake, PROJECT, IMG, &member_id(i), "accepted");
    }
    let exporter = fleet.start(&[]).await;
    fake.state.set_fault(IMG, Some(Fault::Flood(600)));
    let s = wait_for("a too_large failure", async || {
        let s = exporter.scrape_samples().await;
        (errors(&s, IMG, "too_large") > 0.0).then_some(s)
    })
    .await;
    assert_eq!(
        value(&s, "ims_image_unexpected_members", &[("image_id", IMG)]),
        Some(2.0),
        "the last good members stay"
    );
    assert!(exporter.logs().contains("max_members_per_image"));
    // Two pages at most were fetched each time: the cap stops the paging.
    drop(exporter);

    // Across images: 3 + 3 members under a total of 5.
    fake.state.set_fault(IMG, None);
    for i in 1..=3 {
        share(fake, PROJECT, IMG2, &member_id(i), "accepted");
    }
    for i in 1..=3 {
        share(fake, PROJECT, IMG, &member_id(i), "accepted");
    }
    let cfg = fleet.rewrite(|c| c.images(&[IMG2]).config("max_members_total: 5"));
    let (code, s, logs) = run_once(&cfg, &[]).await;
    assert_eq!(code, 1, "{logs}");
    let failed = errors(&s, IMG, "too_large") + errors(&s, IMG2, "too_large");
    assert_eq!(failed, 1.0, "exactly one image over the total: {logs}");
    assert!(logs.contains("max_members_total"), "{logs}");
    fleet.stop().await;
}

/// Item 9: a member ID listed twice, inside a page and across pages: the copy listed
/// last wins, and a warning says how many.
#[tokio::test(flavor = "multi_thread")]
async fn duplicate_member_ids_keep_the_copy_listed_last() {
    let fleet = Fleet::new().await.images(&[IMG]);
    let fake = &fleet.fake;
    share(fake, PROJECT, IMG, &member_id(1), "accepted");
    let m = |id: &str, status: &str| {
        format!(r#"{{"member_id":"{id}","member_type":"project","status":"{status}"}}"#)
    };
    let (x, y) = (member_id(10), member_id(11));
    let page1 = format!(
        r#"{{"members":[{},{},{}],"page_info":{{"next_marker":"cDI="}}}}"#,
        m(&x, "pending"),
        m(&y, "pending"),
        m(&x, "accepted")
    );
    let page2 = format!(r#"{{"members":[{}]}}"#, m(&y, "rejected"));
    fake.state.set_fault(
        IMG,
        Some(Fault::Script(vec![Canned::ok(page1), Canned::ok(page2)])),
    );
    let (code, s, logs) = run_once(&fleet.write_config(), &[]).await;
    assert_eq!(code, 0, "{logs}");
    let status = |id: &str| {
        find(&s, "ims_image_member_info", &[("member_id", id)])
            .iter()
            .map(|s| s.label("status").to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(status(&x), ["accepted"], "later in the same page");
    assert_eq!(status(&y), ["rejected"], "on the later page");
    let warning = logs
        .lines()
        .find(|l| l.contains("listed more than once"))
        .unwrap_or_else(|| panic!("no warning:\n{logs}"));
    assert!(warning.contains("count=2"), "{warning}");
    fleet.stop().await;
}

/// Item 10: values that used to pass `--config.check` and then panic are refused at
/// load with exit code 2 and the key named.
#[tokio::test(flavor = "multi_thread")]
async fn out_of_range_values_are_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::new(UNREACHABLE).images(&[IMG]);
    for (extra, key) in [
        (
            "discovery_interval: 500000000000years",
            "discovery_interval",
        ),
        ("poll_interval: 500000000000years", "poll_interval"),
        ("rate_limit: 1e-300/s", "rate_limit"),
        ("rate_limit: 1e300/s", "rate_limit"),
        ("max_members_per_image: 0", "max_members_per_image"),
        (
            "retry:\n  max_backoff: 500000000000years",
            "retry.max_backoff",
        ),
    ] {
        let cfg = config.clone().config(extra).write(dir.path());
        let mut cmd = Command::new(bin());
        cmd.args(["--config.check", "--config.file"]).arg(&cfg);
        let out = run_tool(cmd, None, Duration::from_secs(30)).await;
        assert_eq!(out.status.code(), Some(2), "{extra}: {}", describe(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(key),
            "{extra}: {}",
            describe(&out)
        );
    }
    let cfg = config.write(dir.path());
    for path in ["metrics", "", "/", "/-/healthy", "/-/reload", "/metrics/"] {
        let mut cmd = Command::new(bin());
        cmd.args(["--config.check", "--config.file"])
            .arg(&cfg)
            .arg(format!("--web.telemetry-path={path}"));
        let out = run_tool(cmd, None, Duration::from_secs(30)).await;
        assert_eq!(out.status.code(), Some(2), "{path:?}: {}", describe(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("web.telemetry-path"),
            "{path:?}: {}",
            describe(&out)
        );
    }
}

/// Item 11: files read at start and at reload are size-capped.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn oversized_files_are_refused_not_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let sparse = dir.path().join("sparse");
    std::fs::File::create(&sparse)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let config = Config::new(UNREACHABLE).images(&[IMG]);
    let good = config.write(dir.path());
    let zero = std::path::Path::new("/dev/zero");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--config.file".into(), zero.display().to_string()],
            "larger than",
        ),
        (
            vec!["--config.file".into(), sparse.display().to_string()],
            "larger than",
        ),
        (
            vec![
                "--config.file".into(),
                good.display().to_string(),
                "--web.config.file".into(),
                zero.display().to_string(),
            ],
            "larger than",
        ),
    ];
    for (args, want) in cases {
        let mut cmd = Command::new(bin());
        cmd.arg("--config.check").args(&args);
        let out = run_tool(cmd, None, Duration::from_secs(30)).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", describe(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(want),
            "{args:?}: {}",
            describe(&out)
        );
    }
    // An allowlist and a secret key file, likewise.
    for capped in [
        config
            .clone()
            .config(&format!("allowed_members_file: {}", sparse.display())),
        config.clone().credentials(&format!(
            "access_key_id: {AK}\nsecret_access_key_file: /dev/zero"
        )),
    ] {
        let cfg = capped.write(dir.path());
        let mut cmd = Command::new(bin());
        cmd.args(["--config.check", "--config.file"]).arg(&cfg);
        let out = run_tool(cmd, None, Duration::from_secs(30)).await;
        assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("larger than"),
            "{}",
            describe(&out)
        );
    }
    // At reload, the running exporter refuses it and keeps going.
    let cfg = config.write(dir.path());
    let exporter = Exporter::start(&["--config.file", cfg.to_str().unwrap()], &[]).await;
    std::fs::remove_file(&cfg).unwrap();
    std::os::unix::fs::symlink(&sparse, &cfg).unwrap();
    exporter.hangup();
    wait_for("the refused reload", async || {
        let s = exporter.scrape_samples().await;
        (value(&s, "ims_exporter_config_last_reload_successful", &[]) == Some(0.0)).then_some(())
    })
    .await;
    // Why, for whoever reads the log.
    wait_for("the reason in the log", async || {
        let logs = exporter.logs();
        (logs.contains("reload refused") && logs.contains("larger than")).then_some(())
    })
    .await;
    assert_eq!(exporter.get("/-/healthy").await.status(), 200);
}

/// Item 12 and the world-readable key: an API error message of 4 MB is cut in the
/// log; a secret key file that every user can read is warned about.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn huge_error_messages_are_cut_and_open_key_files_are_warned_about() {
    let fleet = Fleet::new().await;
    let fake = &fleet.fake;
    share(fake, PROJECT, IMG, &member_id(1), "accepted");
    let huge = format!(
        r#"{{"error_code":"APIGW.0101","error_msg":"{}"}}"#,
        "x".repeat(4 << 20)
    );
    fake.state.set_fault(
        IMG,
        Some(Fault::Script(vec![Canned {
            status: 500,
            headers: vec![],
            body: huge,
        }])),
    );
    let key = fleet.dir.path().join("sk");
    std::fs::write(&key, SK).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let fleet = fleet
        .images(&[IMG])
        .config("retry:\n  max_attempts: 3\n  initial_backoff: 1ms\n  max_backoff: 2ms")
        .credentials(&format!(
            "access_key_id: {AK}\nsecret_access_key_file: {}",
            key.display()
        ));
    let (code, s, logs) = run_once(&fleet.write_config(), &[]).await;
    assert_eq!(code, 1, "{}", &logs[..logs.len().min(2000)]);
    assert_eq!(errors(&s, IMG, "http_5xx"), 1.0);
    assert!(logs.len() < 64 * 1024, "{} bytes of logs", logs.len());
    assert!(logs.contains("readable by every user"), "{logs}");
    fleet.stop().await;
}
