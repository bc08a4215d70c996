//! The command line: config errors, --config.check, --once and --demo, as a user runs them.

use std::process::Command;

use crate::support::*;
use ims_exporter::fake_ims::Fault;

const IMG: &str = "d164b5df-1bc3-4c3f-893e-3e471fd16e64";

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(args)
        .env_remove("HUAWEICLOUD_SDK_AK")
        .env_remove("HUAWEICLOUD_SDK_SK")
        .env(
            "HUAWEICLOUD_SDK_CREDENTIALS_FILE",
            "/nonexistent/ims-exporter-test-credentials",
        )
        .output()
        .expect("run ims-exporter");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The test project's config for `IMG` at an endpoint nobody answers.
fn config() -> Config {
    Config::new(UNREACHABLE).images(&[IMG])
}

fn write(dir: &std::path::Path, config: &Config) -> String {
    config.write(dir).to_str().unwrap().to_string()
}

#[test]
fn config_errors_name_the_file_and_key_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            config().config("poll_intervall: 1s"),
            "unknown field `poll_intervall`",
        ),
        (config().config("poll_interval: often"), "poll_interval"),
        (
            config().config("page_size: 0"),
            "page_size: must be between 1 and 1000, got 0",
        ),
        (
            config().config("max_concurrent_requests: 0"),
            "max_concurrent_requests: must be between 1 and 256",
        ),
        (
            config().main_target(|t| t.project("not-a-project")),
            "targets[0].project_id: must be 32 hex characters",
        ),
        (
            Config::new(UNREACHABLE).images(&["../x?y"]),
            "targets[0].images[0].id: must be a UUID",
        ),
        (config().images(&[IMG]), "targets[0].images[1].id: image"),
        (
            config().credentials(&format!("access_key_id: {AK}")),
            "credentials.secret_access_key: missing",
        ),
    ];
    for (config, want) in cases {
        let path = write(dir.path(), &config);
        let (code, _, stderr) = run(&["--config.file", &path, "--config.check"]);
        assert_eq!(code, 2, "{want}: {stderr}");
        assert!(
            stderr.contains(&path) && stderr.contains(want),
            "expected {want:?} with the file name in:\n{stderr}"
        );
        assert!(!stderr.contains(SK), "secret in error output");
    }
    let (code, _, stderr) = run(&["--config.file", "/nonexistent/config.yaml"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("/nonexistent/config.yaml: cannot read"),
        "{stderr}"
    );
}

#[test]
fn config_check_says_ok_and_where_credentials_come_from() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), &config().config("poll_interval: 2m"));
    let (code, stdout, _) = run(&["--config.file", &path, "--config.check"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("OK: 1 target(s), 1 image(s)"), "{stdout}");
    assert!(
        stdout.contains("credentials: config file (credentials)"),
        "{stdout}"
    );
    assert!(!stdout.contains(SK));
}

#[tokio::test(flavor = "multi_thread")]
async fn once_prints_metrics_and_exits_by_outcome() {
    let fleet = Fleet::new().await.shared(&[IMG]).images(&[IMG]);
    let fake = &fleet.fake;
    let path = fleet.write_config();
    let path = path.to_str().unwrap().to_string();

    let p = path.clone();
    let (code, stdout, _) =
        tokio::task::spawn_blocking(move || run(&["--config.file", &p, "--once"]))
            .await
            .unwrap();
    assert_eq!(code, 0);
    let samples = parse_exposition(&stdout);
    assert_eq!(
        value(
            &samples,
            "ims_image_members",
            &[
                ("image_id", IMG),
                ("member_type", "project"),
                ("status", "accepted")
            ]
        ),
        Some(1.0)
    );
    assert!(
        !stdout.contains("# EOF"),
        "text format for the textfile collector"
    );

    fake.state.set_fault(IMG, Some(Fault::Throttle));
    let (code, stdout, stderr) =
        tokio::task::spawn_blocking(move || run(&["--config.file", &path, "--once"]))
            .await
            .unwrap();
    assert_eq!(code, 1, "{stderr}");
    let samples = parse_exposition(&stdout);
    assert_eq!(
        value(&samples, "ims_image_poll_success", &[("image_id", IMG)]),
        Some(0.0)
    );
    assert_eq!(
        value(
            &samples,
            "ims_image_poll_errors_total",
            &[("image_id", IMG), ("reason", "throttled")]
        ),
        Some(1.0)
    );
    fleet.stop().await;
}

#[test]
fn demo_once_shows_every_type_and_status_and_pages() {
    let (code, stdout, stderr) = run(&["--demo", "--once"]);
    assert_eq!(code, 0, "{stderr}");
    let samples = parse_exposition(&stdout);
    for kind in ["project", "domain", "organization"] {
        for status in ["accepted", "pending", "rejected"] {
            if kind == "organization" && status == "rejected" {
                continue;
            }
            let n: f64 = find(
                &samples,
                "ims_image_members",
                &[("member_type", kind), ("status", status)],
            )
            .iter()
            .map(|s| s.value)
            .sum();
            assert!(n >= 1.0, "demo has a {status} {kind} member");
        }
    }
    assert!(find(
        &samples,
        "ims_image_member_info",
        &[("member_type", "organization")]
    )
    .iter()
    .all(|s| s.label("urn").starts_with("organizations::")));
    // The large demo image needs several pages at the demo's page size.
    let pages = value(
        &samples,
        "ims_api_requests_total",
        &[("operation", "list_members"), ("code", "200")],
    )
    .unwrap();
    assert!(pages >= 6.0, "pages fetched: {pages}");
}

#[test]
fn the_example_config_is_valid() {
    let out = Command::new(bin())
        .args([
            "--config.file",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.yaml"),
            "--config.check",
        ])
        .env("HUAWEICLOUD_SDK_AK", "AKEXAMPLE")
        .env("HUAWEICLOUD_SDK_SK", "SKEXAMPLE")
        .output()
        .expect("run ims-exporter");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("credentials: environment"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn member_metrics_false_keeps_counts_and_unexpected_only() {
    let fleet = Fleet::new()
        .await
        .shared(&[IMG])
        .images(&[IMG])
        .config("member_metrics: false");
    let path = fleet.write_config();
    let path = path.to_str().unwrap().to_string();
    let (code, stdout, stderr) =
        tokio::task::spawn_blocking(move || run(&["--config.file", &path, "--once"]))
            .await
            .unwrap();
    assert_eq!(code, 0, "{stderr}");
    let samples = parse_exposition(&stdout);
    assert_eq!(
        value(
            &samples,
            "ims_image_members",
            &[("member_type", "project"), ("status", "accepted")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &samples,
            "ims_image_unexpected_members",
            &[("image_id", IMG)]
        ),
        Some(1.0)
    );
    assert_eq!(find(&samples, "ims_image_member_unexpected", &[]).len(), 1);
    for family in [
        "ims_image_member_info",
        "ims_image_member_created_timestamp_seconds",
        "ims_image_member_updated_timestamp_seconds",
        "ims_image_member_update_age_seconds",
    ] {
        assert!(find(&samples, family, &[]).is_empty(), "{family} is off");
    }
    fleet.stop().await;
}
