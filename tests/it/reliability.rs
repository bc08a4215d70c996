//! API faults survived: retries with backoff, Retry-After, bounded attempts, the
//! per-target rate limit, the response cap, and targets that cannot stall each other.

use std::time::Duration;

use crate::support::*;
use ims_exporter::fake_ims::Fault;

const IMG: &str = "d164b5df-1bc3-4c3f-893e-3e471fd16e64";
const OTHER_PROJECT: &str = "2c3d4e5f60718293a4b5c6d7e8f90a1b";

fn uuid(i: usize) -> String {
    format!("{i:08x}-0000-4000-8000-000000000000")
}

/// The fake with `images` shared, and a config listing them.
async fn fake_with(images: &[String]) -> Fleet {
    Fleet::new().await.shared(images).images(images)
}

/// Runs `--once` on the fleet's config.
async fn once(fleet: &Fleet) -> (i32, Vec<Sample>, String) {
    let out = fleet.run_once(&["--log.level", "debug"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (
        out.status.code().unwrap_or(-1),
        parse_exposition(&stdout),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const FAST_RETRY: &str = "retry:\n  max_attempts: 3\n  initial_backoff: 10ms\n  max_backoff: 50ms";

#[tokio::test(flavor = "multi_thread")]
async fn transient_failures_are_retried_and_counted() {
    let images = vec![IMG.to_string()];
    let fleet = fake_with(&images).await.config(FAST_RETRY);
    let fake = &fleet.fake;
    fake.state.set_fault(
        IMG,
        Some(Fault::Flaky {
            failures: 2,
            status: 503,
            retry_after: None,
        }),
    );
    let (code, s, logs) = once(&fleet).await;
    assert_eq!(code, 0, "{logs}");
    assert_eq!(
        value(&s, "ims_image_poll_success", &[("image_id", IMG)]),
        Some(1.0)
    );
    assert_eq!(
        value(
            &s,
            "ims_api_retries_total",
            &[("operation", "list_members")]
        ),
        Some(2.0)
    );
    assert_eq!(
        value(
            &s,
            "ims_api_requests_total",
            &[("operation", "list_members"), ("code", "503")]
        ),
        Some(2.0)
    );
    assert!(
        find(&s, "ims_image_poll_errors_total", &[])
            .iter()
            .all(|e| e.value == 0.0),
        "no poll failed"
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn attempts_are_bounded_and_client_errors_are_final() {
    let images = vec![IMG.to_string()];
    let fleet = fake_with(&images).await.config(FAST_RETRY);
    let fake = &fleet.fake;
    fake.state.set_fault(IMG, Some(Fault::Status(503)));
    let (code, s, _) = once(&fleet).await;
    assert_eq!(code, 1);
    assert_eq!(
        value(
            &s,
            "ims_api_requests_total",
            &[("operation", "list_members"), ("code", "503")]
        ),
        Some(3.0),
        "max_attempts"
    );
    assert_eq!(
        value(
            &s,
            "ims_image_poll_errors_total",
            &[("image_id", IMG), ("reason", "http_5xx")]
        ),
        Some(1.0)
    );

    for status in [400, 403, 404] {
        fake.state.set_fault(IMG, Some(Fault::Status(status)));
        let (code, s, _) = once(&fleet).await;
        assert_eq!(code, 1);
        assert_eq!(
            value(
                &s,
                "ims_api_requests_total",
                &[("operation", "list_members"), ("code", &status.to_string())]
            ),
            Some(1.0),
            "{status} is not retried"
        );
        assert!(find(&s, "ims_api_retries_total", &[]).is_empty());
    }
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_after_is_honoured() {
    let images = vec![IMG.to_string()];
    let fleet = fake_with(&images).await.config(FAST_RETRY);
    let fake = &fleet.fake;
    fake.state.set_fault(
        IMG,
        Some(Fault::Flaky {
            failures: 1,
            status: 429,
            retry_after: Some(2),
        }),
    );
    let (code, s, logs) = once(&fleet).await;
    assert_eq!(code, 0, "{logs}");
    assert_eq!(
        value(
            &s,
            "ims_api_requests_total",
            &[("operation", "list_members"), ("code", "429")]
        ),
        Some(1.0)
    );
    let times = fake.state.request_times();
    assert_eq!(times.len(), 2);
    // max_backoff is 50 ms, so only Retry-After can explain a wait of 2 s.
    assert!(
        times[1] - times[0] >= Duration::from_millis(1990),
        "waited {:?}",
        times[1] - times[0]
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rate_limit_spaces_requests() {
    let images: Vec<String> = (0..30).map(uuid).collect();
    let fleet = fake_with(&images)
        .await
        .config("rate_limit: 20/s\nmax_concurrent_requests: 30");
    let fake = &fleet.fake;
    let (code, _, logs) = once(&fleet).await;
    assert_eq!(code, 0, "{logs}");
    let times = fake.state.request_times();
    assert_eq!(times.len(), 30);
    // 20 at once (one second's worth), the other 10 at 20/s: at least half a second.
    let span = *times.iter().max().unwrap() - *times.iter().min().unwrap();
    assert!(
        span >= Duration::from_millis(450),
        "30 requests at 20/s took only {span:?}"
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_body_fails_only_that_image() {
    let images = vec![IMG.to_string(), uuid(1)];
    let fleet = fake_with(&images).await.config("max_response_bytes: 64KiB");
    let fake = &fleet.fake;
    fake.state
        .set_fault(IMG, Some(Fault::Oversized(200 * 1024)));
    let (code, s, logs) = once(&fleet).await;
    assert_eq!(code, 1);
    assert_eq!(
        value(
            &s,
            "ims_image_poll_errors_total",
            &[("image_id", IMG), ("reason", "too_large")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "ims_image_poll_success", &[("image_id", &uuid(1))]),
        Some(1.0)
    );
    assert!(logs.contains("response larger than 65536 bytes"), "{logs}");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_target_does_not_stall_the_others() {
    let hung = uuid(7);
    let fleet = Fleet::new()
        .await
        .config("request_timeout: 50s")
        .images(&[IMG])
        .target(Target::new(OTHER_PROJECT).images(&[&hung]));
    let fake = &fleet.fake;
    share(fake, OTHER_PROJECT, &hung, MEMBER, "accepted");
    share(fake, PROJECT, IMG, MEMBER, "accepted");
    fake.state
        .set_fault(&hung, Some(Fault::Delay(Duration::from_secs(60))));
    // Never ready: the hung target's first cycle cannot end.
    let exporter = fleet.start_unready(&[]).await;
    // The healthy target keeps its one-second schedule while the other waits.
    let first = wait_for("a first poll of the healthy target", async || {
        value(
            &exporter.scrape_samples().await,
            "ims_image_last_success_timestamp_seconds",
            &[("image_id", IMG)],
        )
    })
    .await;
    wait_for("three more polls of the healthy target", async || {
        let s = exporter.scrape_samples().await;
        let last = value(
            &s,
            "ims_image_last_success_timestamp_seconds",
            &[("image_id", IMG)],
        )?;
        assert!(
            find(&s, "ims_image_poll_success", &[("image_id", &hung)]).is_empty(),
            "the hung poll cannot have ended"
        );
        (last >= first + 2.5).then_some(())
    })
    .await;
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_poll_never_overlaps_itself() {
    let images = vec![IMG.to_string()];
    let fleet = fake_with(&images).await;
    let fake = &fleet.fake;
    // Each answer takes 1.5 s with a 1 s interval.
    fake.state
        .set_fault(IMG, Some(Fault::Delay(Duration::from_millis(1500))));
    let exporter = fleet.start_unready(&[]).await;
    wait_for("four polls", async || {
        (fake.state.request_times().len() >= 4).then_some(())
    })
    .await;
    let times = fake.state.request_times();
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(1450),
            "a poll started {:?} after the previous one",
            pair[1] - pair[0]
        );
    }
    drop(exporter);
    fleet.stop().await;
}
