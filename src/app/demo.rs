//! `--demo`: a built-in fake IMS with demo images, whose shares change every two
//! polls, and the config that points the exporter at it.

use std::time::Duration;

use crate::app::exit::EXIT_FAILURE;
use crate::app::source::ConfigSource;
use crate::fake_ims::{self, FakeIms, FakeState};

/// The running demo fake; it lives as long as the exporter.
pub(super) struct Demo {
    fake: FakeIms,
    churn: tokio::task::JoinHandle<()>,
}

impl Demo {
    /// Starts the fake and returns it with the config source that polls it (or the
    /// exit code when it cannot start).
    pub(super) async fn start(
        large_image_members: usize,
        poll_interval: Duration,
    ) -> Result<(Demo, ConfigSource), u8> {
        let state = FakeState::default();
        let secret = fake_ims::demo::populate(&state, large_image_members);
        // Shares change on the fake every two polls, so the audit has something to say.
        let churn = tokio::spawn(fake_ims::demo::churn(state.clone(), poll_interval * 2));
        let fake = match FakeIms::start(state).await {
            Ok(f) => f,
            Err(e) => {
                churn.abort();
                tracing::error!(error = %e, "cannot start the demo's fake IMS");
                return Err(EXIT_FAILURE);
            }
        };
        tracing::info!(endpoint = %fake.endpoint(), "demo mode: polling a built-in fake IMS");
        let yaml = fake_ims::demo::config_yaml(&fake.endpoint(), &secret, poll_interval);
        let source = ConfigSource::Text {
            name: "demo config".into(),
            yaml,
        };
        Ok((Demo { fake, churn }, source))
    }

    pub(super) async fn stop(self) {
        self.churn.abort();
        self.fake.stop().await;
    }
}
