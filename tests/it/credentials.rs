//! Credentials found the way the official SDKs find them, kept fresh, and several
//! accounts in one exporter; project IDs looked up through IAM.

use std::process::Command;
use std::time::Duration;

use crate::support::*;
use ims_exporter::fake_ims::metadata::FakeMetadata;

const IMG: &str = "d164b5df-1bc3-4c3f-893e-3e471fd16e64";
const IMG2: &str = "370befec-a369-475e-a224-44a45927a8fe";
const PROJECT2: &str = "2c3d4e5f60718293a4b5c6d7e8f90a1b";

fn check(config: &str, envs: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(bin());
    cmd.args(["--config.file", config, "--config.check"])
        .env_remove("HUAWEICLOUD_SDK_AK")
        .env_remove("HUAWEICLOUD_SDK_SK")
        .env(
            "HUAWEICLOUD_SDK_CREDENTIALS_FILE",
            "/nonexistent/ims-exporter-test-credentials",
        );
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn polls_ok(exporter: &Exporter, image: &str) -> Vec<Sample> {
    exporter.wait_ready().await;
    let s = exporter.scrape_samples().await;
    assert_eq!(
        value(&s, "ims_image_poll_success", &[("image_id", image)]),
        Some(1.0),
        "{}",
        exporter.logs()
    );
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sdk_credentials_file_is_used() {
    let fleet = Fleet::new().await;
    let file = fleet.dir.path().join("credentials");
    std::fs::write(
        &file,
        format!("[basic]\nak = {AK}\nsk = {SK}\nproject_id = {PROJECT}\n"),
    )
    .unwrap();
    let file = file.to_str().unwrap().to_string();
    let fleet = fleet
        .shared(&[IMG])
        .images(&[IMG])
        .no_credentials()
        .env("HUAWEICLOUD_SDK_CREDENTIALS_FILE", &file);
    let cfg = fleet.write_config();
    let cfg = cfg.to_str().unwrap();
    let file = file.as_str();
    let (code, stdout, stderr) = check(cfg, &[("HUAWEICLOUD_SDK_CREDENTIALS_FILE", file)]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(&format!(
            "credentials: SDK credentials file {file}, access key {AK}"
        )),
        "{stdout}"
    );
    assert!(!stdout.contains(SK));
    let exporter = fleet.start_unready(&[]).await;
    polls_ok(&exporter, IMG).await;
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn providers_are_tried_in_the_documented_order() {
    let fleet = Fleet::new().await.shared(&[IMG]).images(&[IMG]);
    let file = fleet.dir.path().join("credentials");
    std::fs::write(&file, "[basic]\nak = FILEAK\nsk = FILESK\n").unwrap();
    let file = file.to_str().unwrap().to_string();
    let block = format!("access_key_id: {AK}\nsecret_access_key: {SK}");
    let env = [
        ("HUAWEICLOUD_SDK_AK", "ENVAK"),
        ("HUAWEICLOUD_SDK_SK", "ENVSK"),
        ("HUAWEICLOUD_SDK_CREDENTIALS_FILE", file.as_str()),
    ];

    let with_block = fleet.rewrite(|c| c.credentials(&block));
    let (_, out, _) = check(with_block.to_str().unwrap(), &env);
    assert!(
        out.contains("credentials: config file (credentials)"),
        "1. config: {out}"
    );
    let without = fleet.rewrite(Config::no_credentials);
    let without = without.to_str().unwrap();
    let (_, out, _) = check(without, &env);
    assert!(
        out.contains("credentials: environment") && out.contains("ENVAK"),
        "2. environment: {out}"
    );
    let (_, out, _) = check(without, &env[2..]);
    assert!(
        out.contains("credentials: SDK credentials file") && out.contains("FILEAK"),
        "3. file: {out}"
    );
    let (code, _, err) = check(without, &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("no credentials") && err.contains("ecs_metadata"),
        "nothing yields: {err}"
    );

    // At run time too: the config block wins over wrong keys further down the chain.
    let with_block = fleet.rewrite(|c| c.credentials(&block));
    let exporter = Exporter::start(&["--config.file", with_block.to_str().unwrap()], &env).await;
    polls_ok(&exporter, IMG).await;
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ecs_metadata_credentials_are_refreshed_before_they_expire() {
    let fleet = Fleet::new().await.shared(&[IMG]).images(&[IMG]);
    // Credentials that live 4 s: the exporter must refresh them to keep polling.
    let metadata = FakeMetadata::start(fleet.fake.state.clone(), Duration::from_secs(4))
        .await
        .unwrap();
    let fleet = fleet
        .no_credentials()
        .config(&format!("ecs_metadata:\n  url: {}", metadata.url()));
    let cfg = fleet.write_config();
    let (code, out, err) = check(cfg.to_str().unwrap(), &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!(
            "credentials: ECS metadata service {}",
            metadata.url()
        )),
        "{out}"
    );

    let exporter = fleet.start_unready(&[]).await;
    let s = polls_ok(&exporter, IMG).await;
    let first_expiry = value(
        &s,
        "ims_exporter_credentials_expiry_timestamp_seconds",
        &[("provider", "ecs_metadata")],
    )
    .unwrap();
    let first_success = value(
        &s,
        "ims_image_last_success_timestamp_seconds",
        &[("image_id", IMG)],
    )
    .unwrap();
    // Well past the first credentials' lifetime, polls still succeed with fresh ones.
    let s = wait_for("polls past two lifetimes", async || {
        let s = exporter.scrape_samples().await;
        let last = value(
            &s,
            "ims_image_last_success_timestamp_seconds",
            &[("image_id", IMG)],
        )?;
        (last > first_success + 8.0).then_some(s)
    })
    .await;
    assert!(
        metadata.fetches() >= 3,
        "fetched {} times",
        metadata.fetches()
    );
    assert!(
        value(
            &s,
            "ims_exporter_credentials_expiry_timestamp_seconds",
            &[("provider", "ecs_metadata")]
        )
        .unwrap()
            > first_expiry
    );
    assert!(
        find(&s, "ims_image_poll_errors_total", &[("reason", "auth")])
            .iter()
            .all(|e| e.value == 0.0),
        "{}",
        exporter.logs()
    );
    let logs = exporter.logs();
    assert!(
        !logs.contains("tmp-sk-") && !logs.contains("tmp-token-"),
        "temporary secrets must not be logged"
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rejected_credentials_are_refreshed_once() {
    let fleet = Fleet::new().await;
    let sk_file = fleet.dir.path().join("sk");
    std::fs::write(&sk_file, SK).unwrap();
    let fleet = fleet.shared(&[IMG]).images(&[IMG]).credentials(&format!(
        "access_key_id: {AK}\nsecret_access_key_file: {}",
        sk_file.display()
    ));
    let fake = &fleet.fake;
    let exporter = fleet.start_unready(&[]).await;
    polls_ok(&exporter, IMG).await;

    // The key is rotated: the file gets the new secret first (the exporter keeps the
    // old one in memory), then the API switches to it and rejects the old one.
    let rejected = fake.state.rejected_signatures();
    std::fs::write(&sk_file, "ROTATED-SECRET\n").unwrap();
    fake.state.add_account(AK, "ROTATED-SECRET", None);
    wait_for("a request signed with the old secret", async || {
        (fake.state.rejected_signatures() > rejected).then_some(())
    })
    .await;
    let seen = ims_exporter::timestamp::now_unix();
    let s = wait_for("a good poll since", async || {
        let s = exporter.scrape_samples().await;
        let last = value(
            &s,
            "ims_image_last_success_timestamp_seconds",
            &[("image_id", IMG)],
        )?;
        (last > seen).then_some(s)
    })
    .await;
    assert!(
        find(&s, "ims_image_poll_errors_total", &[("reason", "auth")])
            .iter()
            .all(|e| e.value == 0.0),
        "the retry with the new secret succeeded"
    );

    // Rejected again, and the file has nothing new: one refresh, then the failure is reported.
    fake.state.add_account(AK, "ANOTHER-SECRET", None);
    let s = wait_for("the auth failure", async || {
        let s = exporter.scrape_samples().await;
        let errors = value(
            &s,
            "ims_image_poll_errors_total",
            &[("image_id", IMG), ("reason", "auth")],
        )?;
        (errors >= 1.0).then_some(s)
    })
    .await;
    assert_eq!(
        value(&s, "ims_image_poll_success", &[("image_id", IMG)]),
        Some(0.0)
    );
    let logs = exporter.logs();
    assert!(
        !logs.contains("ROTATED-SECRET") && !logs.contains("ANOTHER-SECRET"),
        "{logs}"
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn per_target_credentials_watch_two_accounts() {
    let fleet = Fleet::new().await.shared(&[IMG]);
    share(&fleet.fake, PROJECT2, IMG2, MEMBER, "accepted");
    let fake = &fleet.fake;
    fake.state.add_account("AK2", "SK2", None);
    fake.state.remove_account(AK);
    fake.state.add_account("AK1", "SK1", None);
    let credentials =
        |n: u8| format!("credentials:\n  access_key_id: AK{n}\n  secret_access_key: SK{n}");
    let fleet = fleet
        .no_credentials()
        .with_config(|c| c.main_target(|t| t.keys(&credentials(1)).images(&[IMG])))
        .target(Target::new(PROJECT2).keys(&credentials(2)).images(&[IMG2]));
    let cfg = fleet.write_config();
    let (code, out, err) = check(cfg.to_str().unwrap(), &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("targets[0].credentials") && out.contains("targets[1].credentials"),
        "{out}"
    );
    let exporter = fleet.start_unready(&[]).await;
    polls_ok(&exporter, IMG).await;
    polls_ok(&exporter, IMG2).await;
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_omitted_project_id_is_looked_up_through_iam() {
    let fleet = Fleet::new().await.shared(&[IMG]).images(&[IMG]);
    let fake = &fleet.fake;
    fake.state.add_project(PROJECT, REGION);
    fake.state.add_project(PROJECT2, "ap-southeast-1");
    // The target names its region only; IAM (the fake) says which project that is.
    let iam = format!("iam_endpoint: {}", fake.endpoint());
    let write = |region: &str| {
        let cfg = fleet.rewrite(|c| c.main_target(|t| t.region(region).no_project().keys(&iam)));
        cfg.to_str().unwrap().to_string()
    };
    let cfg = write(REGION);
    let exporter = Exporter::start(&["--config.file", &cfg], &[]).await;
    let s = polls_ok(&exporter, IMG).await;
    assert_eq!(
        find(
            &s,
            "ims_image_poll_success",
            &[("project_id", PROJECT), ("image_id", IMG)]
        )
        .len(),
        1
    );

    // No such project, or two of them: a clear error at start.
    let (code, _, err) = check(&write("eu-west-101"), &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("targets[0].project_id") && err.contains("no project named eu-west-101"),
        "{err}"
    );
    fake.state
        .add_project("3d4e5f60718293a4b5c6d7e8f90a1b2c", REGION);
    let (code, _, err) = check(&write(REGION), &[]);
    assert_eq!(code, 2);
    assert!(err.contains("2 projects are named cn-north-4"), "{err}");
    fleet.stop().await;
}
