//! What `--config.check` prints beyond the targets and credentials: which targets read
//! traces and where, the webhook, and which targets list the images shared with them.

use crate::config::Config;

/// `events.cts` and `events.webhook`, and each target's trace reads.
pub(super) fn print_events(config: &Config) {
    if let Some(cts) = config.events.cts {
        println!(
            "events.cts: every {}, lookback {}",
            humantime::format_duration(cts.interval),
            humantime::format_duration(cts.lookback)
        );
    }
    for t in &config.targets {
        let reads = match &t.cts_endpoint {
            Some(url) => format!("reads traces from {url}"),
            None if config.events.cts.is_some() => "reads no traces (cts: false)".into(),
            None => continue,
        };
        println!("target {} {}: {reads}", t.region, t.project_id().as_str());
    }
}

/// `incoming:` and each target's trusted owners.
pub(super) fn print_incoming(config: &Config) {
    if let Some(every) = config.incoming_interval {
        println!(
            "incoming: every {}, at most {} images a target",
            humantime::format_duration(every),
            config.max_incoming_images
        );
    }
    for t in &config.targets {
        let lists = match &t.incoming {
            Some(trusted) => format!(
                "lists images shared with it; trusted owners: {} entries{}",
                trusted.entries.len(),
                trusted
                    .files
                    .iter()
                    .map(|f| format!(", file {}", f.path.display()))
                    .collect::<String>()
            ),
            None if config.incoming_interval.is_some() => {
                "lists no images shared with it (incoming: false)".into()
            }
            None => continue,
        };
        println!("target {} {}: {lists}", t.region, t.project_id().as_str());
    }
    if let Some(w) = &config.events.webhook {
        println!(
            "events.webhook: POST /api/v1/events, token from {}, SMN topics {}, signatures {}",
            w.token_file.display(),
            w.smn_topics.len(),
            if w.smn_verify {
                "verified"
            } else {
                "not verified"
            }
        );
    }
}
