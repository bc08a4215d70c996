//! Continuity (docs/operations.md#state-across-restarts): with `--storage.path` a restarted
//! exporter serves the last good members at once and audits what changed while it
//! was down; an unusable state file never stops it; a reload keeps every image that
//! stays, discovered ones included, with its counters. And the state file's hardening
//! (issue 19): numbers out of range, FIFOs, hung reads, huge files, two processes on
//! one directory, file modes.

use std::path::Path;
use std::time::Duration;

use crate::support::*;

const IMG: &str = "d164b5df-1bc3-4c3f-893e-3e471fd16e64";

fn members(s: &[Sample]) -> Vec<String> {
    let mut ids: Vec<String> = find(s, "ims_image_member_unexpected", &[("image_id", IMG)])
        .iter()
        .map(|s| s.label("member_id").to_string())
        .collect();
    ids.sort();
    ids
}

/// Starts an exporter of `fleet` keeping its state in `state` (returns once it listens).
async fn start(fleet: &Fleet, state: &std::path::Path) -> Exporter {
    fleet
        .start_unready(&["--storage.path", state.to_str().unwrap()])
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_serves_the_last_members_at_once_and_audits_what_changed_while_down() {
    let fleet = Fleet::new().await.images(&[IMG]);
    let fake = &fleet.fake;
    share(fake, PROJECT, IMG, &member_id(1), "pending");
    share(fake, PROJECT, IMG, &member_id(2), "pending");
    let state = fleet.dir.path().join("state");
    let exporter = start(&fleet, &state).await;
    let written = wait_for("the state to be written", async || {
        let s = exporter.scrape_samples().await;
        let ok = value(&s, "ims_exporter_state_last_write_successful", &[]) == Some(1.0);
        (ok && members(&s).len() == 2).then_some(s)
    })
    .await;
    let last_success = value(
        &written,
        "ims_image_last_success_timestamp_seconds",
        &[("image_id", IMG)],
    )
    .unwrap();
    // kill -9, then a share removed and one added while the exporter is down.
    drop(exporter);
    assert!(fake.state.remove_member(PROJECT, IMG, &member_id(1)));
    share(fake, PROJECT, IMG, &member_id(3), "pending");
    // The first poll after the restart takes a while: the restored members are
    // served before it ends.
    fake.state.set_latency(Duration::from_secs(3));
    let exporter = start(&fleet, &state).await;
    let s = exporter.scrape_samples().await;
    assert_eq!(
        members(&s),
        [member_id(1), member_id(2)],
        "restored before the first poll"
    );
    let restored_success = value(
        &s,
        "ims_image_last_success_timestamp_seconds",
        &[("image_id", IMG)],
    )
    .unwrap();
    assert!(
        restored_success <= last_success + 5.0 && restored_success >= last_success - 5.0,
        "the true last success time: {restored_success} vs {last_success}"
    );
    assert_eq!(
        value(&s, "ims_exporter_state_restore_successful", &[]),
        Some(1.0)
    );
    fake.state.set_latency(Duration::ZERO);
    wait_for("the first poll after the restart", async || {
        let s = exporter.scrape_samples().await;
        (members(&s) == [member_id(2), member_id(3)]).then_some(())
    })
    .await;
    let logs = exporter.logs();
    assert_eq!(logs.matches("member_added").count(), 1, "{logs}");
    assert_eq!(logs.matches("member_removed").count(), 1, "{logs}");
    assert!(
        logs.contains(&member_id(3)) && !logs.contains("event=baseline"),
        "{logs}"
    );
    // The share browser's history has both changes, and keeps them across a restart.
    let expected = [("added", member_id(3)), ("removed", member_id(1))];
    let history = async |exporter: &Exporter| -> Vec<(String, String)> {
        let v: serde_json::Value = exporter.get("/api/v1/changes").await.json().await.unwrap();
        let mut rows: Vec<(String, String)> = v["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["change"].as_str().unwrap().to_string(),
                    c["member_id"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        rows.sort();
        rows
    };
    wait_for("the changes to be written", async || {
        let s = exporter.scrape_samples().await;
        let written = value(&s, "ims_exporter_state_last_write_successful", &[]) == Some(1.0);
        let state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(state.join("state.json")).ok()?).ok()?;
        (written && state["changes"].as_array().map(Vec::len) == Some(2)).then_some(())
    })
    .await;
    let before = history(&exporter).await;
    assert_eq!(before, expected.map(|(k, m)| (k.to_string(), m)));
    drop(exporter);
    // Served from the state file before the first poll ends.
    fake.state.set_latency(Duration::from_secs(3));
    let exporter = start(&fleet, &state).await;
    assert_eq!(history(&exporter).await, before, "restored change history");
    fake.state.set_latency(Duration::ZERO);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unusable_state_file_is_moved_aside_and_the_exporter_starts_clean() {
    let fleet = Fleet::new().await.images(&[IMG]);
    share(&fleet.fake, PROJECT, IMG, &member_id(1), "pending");
    let dir = &fleet.dir;
    let good = r#"{"version":1,"written_at":1.0,"images":[]}"#;
    for (what, text) in [
        ("corrupt", "{not json at all".to_string()),
        ("truncated", good[..good.len() / 2].to_string()),
        (
            "future version",
            r#"{"version":99,"written_at":1.0,"images":[]}"#.into(),
        ),
    ] {
        let state = dir.path().join(what.replace(' ', "-"));
        std::fs::create_dir_all(&state).unwrap();
        std::fs::write(state.join("state.json"), text).unwrap();
        let exporter = fleet
            .start(&["--storage.path", state.to_str().unwrap()])
            .await;
        let s = exporter.scrape_samples().await;
        assert_eq!(
            value(&s, "ims_exporter_state_restore_successful", &[]),
            Some(0.0),
            "{what}"
        );
        assert_eq!(
            value(&s, "ims_image_poll_success", &[("image_id", IMG)]),
            Some(1.0),
            "{what}: a clean start"
        );
        let logs = exporter.logs();
        assert!(
            logs.contains("cannot restore state") && logs.contains("state.json"),
            "{what}: {logs}"
        );
        let aside = std::fs::read_dir(&state)
            .unwrap()
            .filter_map(Result::ok)
            .any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("state.json.bad-")
            });
        assert!(aside, "{what}: moved aside, not deleted");
    }
    fleet.stop().await;
}

/// Reproduces the reload bug of issue 13: a discovered image lost its counters and
/// was re-baselined by a SIGHUP.
#[tokio::test(flavor = "multi_thread")]
async fn a_reload_keeps_discovered_images_with_their_counters() {
    let fleet = Fleet::new().await.target_keys("discover: {}");
    let fake = &fleet.fake;
    fake.state.add_image(PROJECT, IMG, "golden");
    share(fake, PROJECT, IMG, &member_id(1), "pending");
    let exporter = fleet.start(&[]).await;
    share(fake, PROJECT, IMG, &member_id(2), "pending");
    let added = |s: &[Sample]| {
        value(
            s,
            "ims_member_changes_total",
            &[("image_id", IMG), ("change", "added")],
        )
    };
    wait_for("the added share to be counted", async || {
        (added(&exporter.scrape_samples().await) == Some(1.0)).then_some(())
    })
    .await;
    exporter.reload().await;
    let s = exporter.scrape_samples().await;
    assert_eq!(added(&s), Some(1.0), "the counter survives the reload");
    assert_eq!(members(&s).len(), 2, "the members are served throughout");
    // Two polls later, still no second baseline.
    let seen = fake.state.requests();
    wait_for("two more polls", async || {
        (fake.state.requests() >= seen + 2).then_some(())
    })
    .await;
    wait_for("their results", async || {
        let s = exporter.scrape_samples().await;
        let t = value(
            &s,
            "ims_image_last_success_timestamp_seconds",
            &[("image_id", IMG)],
        );
        (t > value(
            &s,
            "ims_exporter_config_last_reload_success_timestamp_seconds",
            &[],
        ))
        .then_some(())
    })
    .await;
    assert_eq!(exporter.logs().matches("event=baseline").count(), 1);
    fleet.stop().await;
}

/// A state file as an exporter of [`IMG`] writes it: one member, one change.
fn state_file() -> serde_json::Value {
    let now = 1_750_000_000.0;
    serde_json::json!({
        "version": 1,
        "written_at": now,
        "images": [{
            "region": REGION, "project_id": PROJECT, "image_id": IMG, "name": "golden",
            "source": "config", "last_success": now, "complete": true,
            "members": [{"id": member_id(1), "type": "project", "status": "accepted",
                         "created_at": now, "updated_at": now}],
            "watched": {}, "changes": {"added": 1}
        }],
        "changes": [{
            "time": now, "change": "added", "region": REGION, "project_id": PROJECT,
            "image_id": IMG, "image_name": "golden", "member_id": member_id(1),
            "member_type": "project", "status": "accepted", "unexpected": true
        }]
    })
}

/// The files moved aside in `dir`.
fn moved_aside(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("state.json.bad-")
        })
        .map(|e| e.path())
        .collect()
}

/// Asserts that every page answers: the health check, the JSON API with JSON, the
/// share browser with a page (no internal error text anywhere).
async fn every_page_answers(exporter: &Exporter, what: &str) {
    assert_eq!(exporter.get("/-/healthy").await.status(), 200, "{what}");
    for path in ["/api/v1/changes", "/api/v1/images", "/api/v1/shares"] {
        let response = exporter.get(path).await;
        assert_eq!(response.status(), 200, "{what}: {path}");
        let body = response.text().await.unwrap();
        let json: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{what}: {path} is not JSON ({e}): {body:?}"));
        assert_eq!(json["version"], 1, "{what}: {path}");
    }
    let page = exporter.get("/shares").await;
    assert_eq!(page.status(), 200, "{what}: /shares");
    let body = page.text().await.unwrap();
    assert!(!body.contains("panic"), "{what}: /shares: {body}");
}

/// A change to [`state_file`]: where, what, and how.
type Hostile = (&'static str, &'static str, fn(&mut serde_json::Value));

/// Starts an exporter on each of `cases` and asserts that the file is refused (moved
/// aside, the restore metric 0, the warning says where the value is), that every page
/// answers, and that the next start is a clean one.
async fn refused_and_every_page_answers(cases: &[Hostile]) {
    let fleet = Fleet::new().await.images(&[IMG]);
    share(&fleet.fake, PROJECT, IMG, &member_id(1), "pending");
    for (i, (at, number, edit)) in cases.iter().enumerate() {
        let what = format!("{at} = {number}");
        let state = fleet.dir.path().join(format!("state-{i}"));
        std::fs::create_dir_all(&state).unwrap();
        let mut file = state_file();
        edit(&mut file);
        std::fs::write(state.join("state.json"), file.to_string()).unwrap();
        let exporter = start(&fleet, &state).await;
        every_page_answers(&exporter, &what).await;
        let s = exporter.scrape_samples().await;
        assert_eq!(
            value(&s, "ims_exporter_state_restore_successful", &[]),
            Some(0.0),
            "{what}"
        );
        let logs = exporter.logs();
        assert!(
            logs.contains("cannot restore state") && logs.contains(at),
            "{what}: {logs}"
        );
        assert_eq!(moved_aside(&state).len(), 1, "{what}: moved aside");
        // The next start is a clean one, not another crash.
        drop(exporter);
        let exporter = start(&fleet, &state).await;
        exporter.wait_ready().await;
        every_page_answers(&exporter, &what).await;
    }
    fleet.stop().await;
}

/// Issue 19, item 4: a huge number crash-looped the exporter: a panic at start, exit
/// 101, and the file left in place for the next start.
#[tokio::test(flavor = "multi_thread")]
async fn a_time_out_of_range_does_not_crash_the_start() {
    refused_and_every_page_answers(&[
        ("written_at", "1e19", |f| f["written_at"] = 1e19.into()),
        ("written_at", "1e300", |f| f["written_at"] = 1e300.into()),
        ("written_at", "-1", |f| f["written_at"] = (-1.0).into()),
    ])
    .await;
}

/// Issue 19, item 5: times past the year 9999 were restored, then `/api/v1/*` answered
/// with an empty reply and `/shares` with a 500 carrying a panic message.
#[tokio::test(flavor = "multi_thread")]
async fn times_past_the_year_9999_are_refused_and_every_page_still_answers() {
    refused_and_every_page_answers(&[
        ("changes[0].time", "1e13", |f| {
            f["changes"][0]["time"] = 1e13.into()
        }),
        ("images[0].last_success", "1e15", |f| {
            f["images"][0]["last_success"] = 1e15.into()
        }),
        ("images[0].members[0].created_at", "1e12", |f| {
            f["images"][0]["members"][0]["created_at"] = 1e12.into()
        }),
        ("images[0].members[0].updated_at", "1e12", |f| {
            f["images"][0]["members"][0]["updated_at"] = 1e12.into()
        }),
    ])
    .await;
}

/// Issue 19, item 6: with a FIFO at the state path the exporter never listened and
/// ignored SIGTERM and SIGINT.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn a_fifo_at_the_state_path_is_refused_unopened_and_sigterm_still_ends_the_exporter() {
    let fleet = Fleet::new().await.images(&[IMG]);
    share(&fleet.fake, PROJECT, IMG, &member_id(1), "pending");
    let state = fleet.dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    mkfifo(&state.join("state.json"));
    // Never listened here, before the fix.
    let exporter = start(&fleet, &state).await;
    let s = exporter.scrape_samples().await;
    assert_eq!(
        value(&s, "ims_exporter_state_restore_successful", &[]),
        Some(0.0)
    );
    let logs = exporter.logs();
    assert!(logs.contains("not a regular file but a FIFO"), "{logs}");
    let aside = moved_aside(&state);
    assert_eq!(aside.len(), 1, "{logs}");
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata(&aside[0]).unwrap().file_type().is_fifo());
    let status = exporter.terminate().await;
    assert_eq!(status.code(), Some(0), "{status}");
    fleet.stop().await;
}

#[cfg(unix)]
fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

/// The exporter as a child process, from its first line of log: for what happens
/// before it listens.
#[cfg(target_os = "linux")]
struct Starting {
    child: KillOnDrop,
    logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

#[cfg(target_os = "linux")]
impl Starting {
    fn spawn(args: &[&str]) -> Starting {
        use std::io::{BufRead, BufReader};
        use std::process::Stdio;
        let mut child = command()
            .args(args)
            .args(["--web.listen-address", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ims-exporter");
        let stderr = child.stderr.take().expect("stderr");
        let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Starting {
            child: KillOnDrop(child),
            logs,
        }
    }

    fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }
}

/// Issue 19, item 6: a read of the state file that hangs (a hung mount; here a file
/// lease, which holds up whoever opens the file for 45 s) held up the start, and
/// SIGTERM with it. Now SIGTERM during the restore ends the exporter at once, with
/// the exit code of a normal shutdown.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_hung_restore_ends_the_exporter_at_once() {
    use std::os::fd::AsRawFd;
    let fleet = Fleet::new().await.images(&[IMG]);
    let state = fleet.dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let file = state.join("state.json");
    std::fs::write(&file, state_file().to_string()).unwrap();
    let leased = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    // SAFETY: plain libc calls on a descriptor this test owns; SIGIO (the lease-break
    // notice) is ignored, not handled.
    let taken = unsafe {
        libc::signal(libc::SIGIO, libc::SIG_IGN);
        libc::fcntl(leased.as_raw_fd(), libc::F_SETLEASE, libc::F_WRLCK)
    };
    if taken != 0 {
        let e = std::io::Error::last_os_error();
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "file leases are needed under CI=true: {e}"
        );
        eprintln!("SKIPPED: this file system gives no lease: {e}");
        return;
    }
    let config = fleet.write_config();
    let mut exporter = Starting::spawn(&[
        "--config.file",
        config.to_str().unwrap(),
        "--storage.path",
        state.to_str().unwrap(),
    ]);
    // The exporter is in open(2), held up by the lease.
    wait_for("the exporter to open the state file", async || {
        // SAFETY: as above.
        let lease = unsafe { libc::fcntl(leased.as_raw_fd(), libc::F_GETLEASE) };
        (lease != libc::F_WRLCK).then_some(())
    })
    .await;
    signal(exporter.child.0.id(), "-TERM");
    // Before the fix: no exit until the lease broke, 45 s later.
    let status = wait_for("the exporter to exit", async || {
        exporter.child.0.try_wait().expect("try_wait")
    })
    .await;
    let logs = exporter.logs();
    assert_eq!(status.code(), Some(0), "{status}: {logs}");
    assert!(
        logs.contains("shutting down") && !logs.contains("listening"),
        "ended during the restore: {logs}"
    );
    drop(leased);
    fleet.stop().await;
}

/// The peak resident memory of process `pid` (Linux).
#[cfg(target_os = "linux")]
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in {status}"));
    kib * 1024
}

/// Issue 19, item 7: `state.json` -> `/dev/zero` cost 1 GiB of memory at start (the
/// Kubernetes manifest's limit is 256 MiB). A device is refused without being read,
/// and a regular file past the cap (derived from `max_members_total`) too.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread")]
async fn a_huge_state_file_is_refused_before_it_is_read() {
    let fleet = Fleet::new()
        .await
        .images(&[IMG])
        .config("max_members_total: 1000");
    share(&fleet.fake, PROJECT, IMG, &member_id(1), "pending");
    // 16 MiB + 512 bytes a member.
    let cap = (16u64 << 20) + 512 * 1000;
    for what in ["/dev/zero", "sparse"] {
        let state = fleet
            .dir
            .path()
            .join(format!("state-{}", what.replace('/', "")));
        std::fs::create_dir(&state).unwrap();
        let file = state.join("state.json");
        if what == "sparse" {
            // 2 GiB that take no disk, and no memory unless read.
            std::fs::File::create(&file)
                .unwrap()
                .set_len(2 << 30)
                .unwrap();
        } else {
            std::os::unix::fs::symlink(what, &file).unwrap();
        }
        let exporter = start(&fleet, &state).await;
        // Before the fix: 1 GiB read, to find the file too large.
        let peak = peak_rss(exporter.pid());
        assert!(
            peak < 128 << 20,
            "{what}: the start took {} MiB",
            peak >> 20
        );
        let s = exporter.scrape_samples().await;
        assert_eq!(
            value(&s, "ims_exporter_state_restore_successful", &[]),
            Some(0.0),
            "{what}"
        );
        let logs = exporter.logs();
        let why = if what == "sparse" {
            format!("larger than the {cap} bytes")
        } else {
            "not a regular file but a character device".to_string()
        };
        assert!(logs.contains(&why), "{what}: {logs}");
        assert_eq!(moved_aside(&state).len(), 1, "{what}: moved aside");
        every_page_answers(&exporter, what).await;
    }
    fleet.stop().await;
}

/// Issue 19, item 8: two processes shared one storage directory, both wrote, and
/// renames failed now and then. The second now exits 1 naming the directory and the
/// holder's PID; once the first is gone, the directory can be used again.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_exporter_on_the_same_storage_directory_exits_1() {
    let fleet = Fleet::new().await.images(&[IMG]);
    share(&fleet.fake, PROJECT, IMG, &member_id(1), "pending");
    let state = fleet.dir.path().join("state");
    let first = start(&fleet, &state).await;
    let mut second = command();
    second.args([
        "--config.file",
        fleet.config_path().to_str().unwrap(),
        "--storage.path",
        state.to_str().unwrap(),
        "--web.listen-address",
        "127.0.0.1:0",
    ]);
    // Before the fix it ran (and so ran past the timeout).
    let out = run_tool(second, None, DEADLINE).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        stderr.contains(&format!(
            "--storage.path {}: locked by another ims-exporter (PID {})",
            state.display(),
            first.pid()
        )) && stderr.contains("two processes must not share a storage directory"),
        "{stderr}"
    );
    assert!(!stderr.contains("listening"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(state.join("lock")).unwrap().trim(),
        first.pid().to_string()
    );
    // The first goes on writing.
    wait_for("a state write", async || {
        let s = first.scrape_samples().await;
        (value(&s, "ims_exporter_state_last_write_successful", &[]) == Some(1.0)).then_some(())
    })
    .await;
    let status = first.terminate().await;
    assert_eq!(status.code(), Some(0));
    // The lock went with the process.
    let again = start(&fleet, &state).await;
    let s = again.scrape_samples().await;
    assert_eq!(
        value(&s, "ims_exporter_state_restore_successful", &[]),
        Some(1.0)
    );
    fleet.stop().await;
}

/// Issue 19, item 9: the state file was readable by every user (0644). It is 0600,
/// and the directory 0700 when the exporter creates it; an existing directory is left
/// as it is.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn the_state_is_private() {
    use std::os::unix::fs::PermissionsExt;
    // As most systems set it; the modes must not depend on it.
    // SAFETY: umask(2) cannot fail.
    unsafe { libc::umask(0o022) };
    let fleet = Fleet::new().await.images(&[IMG]);
    share(&fleet.fake, PROJECT, IMG, &member_id(1), "pending");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let created = fleet.dir.path().join("new/state");
    let existing = fleet.dir.path().join("existing");
    std::fs::create_dir(&existing).unwrap();
    std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o750)).unwrap();
    for state in [&created, &existing] {
        let exporter = start(&fleet, state).await;
        wait_for("a state write", async || {
            let s = exporter.scrape_samples().await;
            (value(&s, "ims_exporter_state_last_write_successful", &[]) == Some(1.0)).then_some(())
        })
        .await;
        assert_eq!(
            mode(&state.join("state.json")),
            0o600,
            "{}",
            state.display()
        );
        assert_eq!(mode(&state.join("lock")), 0o600, "{}", state.display());
    }
    assert_eq!(mode(&created), 0o700);
    assert_eq!(mode(created.parent().unwrap()), 0o700);
    assert_eq!(mode(&existing), 0o750, "left as it was");
    fleet.stop().await;
}

/// The config changed while the exporter was down: an image it restored with shares
/// and no longer monitors leaves one `image_unmonitored` row. No poll judged the
/// restored list against the allowlist, so its unexpected count is unknown (`null`).
/// The row is kept in the state file like any change.
#[tokio::test(flavor = "multi_thread")]
async fn an_image_dropped_across_a_restart_says_so_in_the_change_history() {
    const OTHER: &str = "370befec-a369-475e-a224-44a45927a8fe";
    let fleet = Fleet::new().await.images(&[IMG, OTHER]);
    let fake = &fleet.fake;
    share(fake, PROJECT, IMG, &member_id(1), "pending");
    share(fake, PROJECT, IMG, &member_id(2), "pending");
    fake.state.add_image(PROJECT, OTHER, "other");
    let state = fleet.dir.path().join("state");
    let exporter = start(&fleet, &state).await;
    wait_for("the state to be written", async || {
        let file: serde_json::Value =
            serde_json::from_slice(&std::fs::read(state.join("state.json")).ok()?).ok()?;
        let images = file["images"].as_array()?;
        images
            .iter()
            .any(|i| i["image_id"] == IMG && i["members"].as_array().map(Vec::len) == Some(2))
            .then_some(())
    })
    .await;
    drop(exporter);

    // IMG leaves the config while the exporter is down.
    let config = fleet.rewrite(|c| c.no_images().images(&[OTHER]));
    let args = [
        "--config.file",
        config.to_str().unwrap(),
        "--storage.path",
        state.to_str().unwrap(),
    ];
    let unmonitored = async |exporter: &Exporter| -> Vec<serde_json::Value> {
        let v: serde_json::Value = exporter.get("/api/v1/changes").await.json().await.unwrap();
        v["changes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["change"] == "image_unmonitored")
            .cloned()
            .collect()
    };
    let exporter = Exporter::start(&args, &[]).await;
    let rows = wait_for("the image_unmonitored row", async || {
        let rows = unmonitored(&exporter).await;
        (!rows.is_empty()).then_some(rows)
    })
    .await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["image_id"], IMG);
    assert_eq!(rows[0]["members"], 2);
    assert_eq!(rows[0]["unexpected_members"], serde_json::Value::Null);
    assert_eq!(rows[0]["unexpected"], false);
    let logs = exporter.logs();
    assert!(
        logs.contains(&format!(
            "event=image_unmonitored region={REGION} project_id={PROJECT} image_id={IMG} \
             image_name= members=2 unexpected=unknown"
        )),
        "{logs}"
    );
    wait_for("the row to be written", async || {
        let file: serde_json::Value =
            serde_json::from_slice(&std::fs::read(state.join("state.json")).ok()?).ok()?;
        let changes = file["changes"].as_array()?;
        changes
            .iter()
            .any(|c| c["change"] == "image_unmonitored" && c["members"] == 2)
            .then_some(())
    })
    .await;
    drop(exporter);
    let exporter = Exporter::start(&args, &[]).await;
    assert_eq!(
        unmonitored(&exporter).await,
        rows,
        "restored from the state file"
    );
    fleet.stop().await;
}
